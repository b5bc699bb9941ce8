// The MACE drop-in (src/cpp/mace_kv_storage.cc), compiled with MACE's flags against the MACE
// interface header, driven through MACE's call sequence. Built three times: for MACE 1.1 (the
// default), for MACE 1.0 (MACE_STORAGE_MACE_1_0) and with MACE_STORAGE_STRICT_FLUSH; each checks
// its files with a stock reader of its MACE version.
#include "mace/core/kv_storage.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "mace_storage.h"
#include "mace_storage_dropin.h"
#include "support/test_support.h"

namespace {

using test::B;
using test::Bytes;
using test::Entries;

#ifdef MACE_STORAGE_MACE_1_0
const char kGolden[] = "mace-1.0-cache.bin";
const int32_t kWrittenFormat = MACE_STORAGE_FORMAT_CHECKED_1_0;
test::StockView Stock(const Bytes &file) { return test::StockRead10(file); }
#else
const char kGolden[] = "mace-1.1-cache.bin";
const int32_t kWrittenFormat = MACE_STORAGE_FORMAT_CHECKED_1_1;
test::StockView Stock(const Bytes &file) { return test::StockRead11(file); }
#endif

#ifdef MACE_STORAGE_STRICT_FLUSH
const int kFailedFlush = -1;
const char kFailedFlushSays[] = "returned -1 as MACE_STORAGE_STRICT_FLUSH asks";
#else
const int kFailedFlush = 0;
const char kFailedFlushSays[] = "returned success so MACE keeps running";
#endif

const char kCacheName[] = "mace_cl_compiled_program.bin";
const char kPlatformKey[] = "mace_opencl_precompiled_platform_info_key";
const char kDeviceKey[] = "mace_opencl_precompiled_device_name_key";
const char kHashPrefix[] = "program_hash_ ";
const char kKnownProgram[] =
    "conv_2d_1x1 -DBIAS -DCMD_DATA_TYPE=f -DDATA_TYPE=float -Dconv_2d_1x1=conv_2d_1x1";
const char kNewProgram[] = "pooling -DCMD_DATA_TYPE=f -DDATA_TYPE=float -Dpooling=pooling";

// A store for dir/mace_cl_compiled_program.bin, made the way MACE makes it.
std::shared_ptr<mace::KVStorage> CacheIn(const test::TempDir &dir) {
  mace::FileStorageFactory factory(dir.path());
  return factory.CreateStorage(kCacheName);
}

// The golden file's entries, as the stock reader of this MACE version sees them.
Entries GoldenEntries() { return Stock(test::ReadFile(test::GoldenPath(kGolden))).entries; }

// The entries the stock MACE of this version would load from path; a failure if it would not.
Entries StockEntries(const std::string &path) {
  test::StockView view = Stock(test::ReadFile(path));
  EXPECT_TRUE(view.loads) << path << ": " << view.why;
  EXPECT_EQ(0, view.duplicates) << path;
  return view.entries;
}

// The format the library detects in the file at path.
int32_t FormatOf(const std::string &path) {
  MaceStorageOptions options = MaceStorageOptions();
  options.read_only = 1;
  MaceStorage *s = nullptr;
  if (mace_storage_open(path.c_str(), &options, &s) != MACE_STORAGE_OK) return -1;
  MaceStorageOpenReport report = MaceStorageOpenReport();
  mace_storage_open_findings(s, &report);
  mace_storage_close(s);
  return report.format;
}

// Of the candidates, those Find returns; fails on any value that differs from the candidate's.
Entries FoundEntries(mace::KVStorage *cache, const Entries &candidates) {
  Entries found;
  for (Entries::const_iterator it = candidates.begin(); it != candidates.end(); ++it) {
    const std::vector<unsigned char> *v = cache->Find(it->first);
    if (v == nullptr) continue;
    EXPECT_EQ(it->second, *v) << "a value that is not the one written: " << it->first;
    found[it->first] = *v;
  }
  return found;
}

TEST(DropIn, LoadGivesExactlyTheManifestEntries) {
  test::TempDir dir;
  ASSERT_TRUE(test::CopyGolden(kGolden, dir.Path(kCacheName)));
  std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
  ASSERT_EQ(0, cache->Load());
  std::vector<test::ManifestEntry> manifest = test::Manifest(kGolden);
  ASSERT_EQ(11u, manifest.size());
  for (size_t i = 0; i < manifest.size(); ++i) {
    const std::vector<unsigned char> *v = cache->Find(manifest[i].key);
    ASSERT_NE(nullptr, v) << manifest[i].key;
    EXPECT_EQ(manifest[i].value_len, v->size()) << manifest[i].key;
    EXPECT_EQ(manifest[i].value_crc, test::Crc32(*v)) << manifest[i].key;
  }
  EXPECT_EQ(nullptr, cache->Find("absent"));
  EXPECT_EQ(nullptr, cache->Find(std::string("key")));  // not "key\0with_nul_inside" cut short
  EXPECT_EQ(manifest.size(), GoldenEntries().size());
  EXPECT_EQ(0, cache->Load());
  // Nothing changed: Flush writes nothing and the stock file stays as MACE wrote it.
  EXPECT_EQ(0, cache->Flush());
  EXPECT_EQ(test::ReadFile(test::GoldenPath(kGolden)), test::ReadFile(dir.Path(kCacheName)));
}

TEST(DropIn, MaceCallSequenceLeavesAFileStockMaceReads) {
  test::TempDir dir;
  const std::string path = dir.Path(kCacheName);
  ASSERT_TRUE(test::CopyGolden(kGolden, path));
  Entries expected = GoldenEntries();
  const Bytes platform = expected[kPlatformKey], device = expected[kDeviceKey];
  const Bytes binary = test::ReadFile(test::GoldenPath("pocl-program-a.bin"));
  ASSERT_FALSE(binary.empty());
  {
    // 1. Load; the platform and device match the running GPU: no Clear.
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    ASSERT_EQ(0, cache->Load());
    ASSERT_NE(nullptr, cache->Find(kPlatformKey));
    ASSERT_NE(nullptr, cache->Find(kDeviceKey));
    EXPECT_EQ(platform, *cache->Find(kPlatformKey));
    // 3. A cached program is found with its hash; a new one is not.
    const std::vector<unsigned char> *known = cache->Find(kKnownProgram);
    ASSERT_NE(nullptr, known);
    EXPECT_EQ(48677u, known->size());
    EXPECT_NE(nullptr, cache->Find(std::string(kHashPrefix) + kKnownProgram));
    EXPECT_EQ(nullptr, cache->Find(std::string(kHashPrefix) + kNewProgram));
    EXPECT_EQ(nullptr, cache->Find(kNewProgram));
    // 4. Insert device name, binaries, hashes, platform info; Flush.
    EXPECT_TRUE(cache->Insert(kDeviceKey, device));
    EXPECT_TRUE(cache->Insert(kNewProgram, binary));
    EXPECT_TRUE(cache->Insert(std::string(kHashPrefix) + kNewProgram, B("0a1b2c3d4e5f60718293")));
    EXPECT_TRUE(cache->Insert(kPlatformKey, platform));
    EXPECT_EQ(0, cache->Flush());
    // The pointer Find gave is still the cached program after the inserts and the flush.
    EXPECT_EQ(48677u, known->size());
  }
  expected[kNewProgram] = binary;
  expected[std::string(kHashPrefix) + kNewProgram] = B("0a1b2c3d4e5f60718293");
  EXPECT_EQ(expected, StockEntries(path));
  EXPECT_EQ(kWrittenFormat, FormatOf(path));

  // The next run inserts the same values again: nothing to write.
  const Bytes written = test::ReadFile(path);
  {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    ASSERT_EQ(0, cache->Load());
    ASSERT_NE(nullptr, cache->Find(kNewProgram));
    EXPECT_EQ(binary, *cache->Find(kNewProgram));
    EXPECT_TRUE(cache->Insert(kDeviceKey, device));
    EXPECT_TRUE(cache->Insert(kPlatformKey, platform));
    EXPECT_EQ(0, cache->Flush());
  }
  EXPECT_EQ(written, test::ReadFile(path));

  // A run that builds one more program.
  const Bytes binary_b = test::ReadFile(test::GoldenPath("pocl-program-b.bin"));
  {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    ASSERT_EQ(0, cache->Load());
    EXPECT_TRUE(cache->Insert("another_program -DX=2", binary_b));
    EXPECT_TRUE(cache->Insert(kPlatformKey, platform));
    EXPECT_EQ(0, cache->Flush());
  }
  expected["another_program -DX=2"] = binary_b;
  EXPECT_EQ(expected, StockEntries(path));
#ifndef MACE_STORAGE_MACE_1_0
  // Only new keys: appended, the file before its old trailer untouched.
  const Bytes appended = test::ReadFile(path);
  ASSERT_GT(appended.size(), written.size());
  EXPECT_LT(appended.size() - written.size(), binary_b.size() + 1024);
  EXPECT_TRUE(std::equal(written.begin(), written.end() - 4, appended.begin()));
#endif
}

TEST(DropIn, PlatformMismatchClearsTheCache) {
  test::TempDir dir;
  const std::string path = dir.Path(kCacheName);
  ASSERT_TRUE(test::CopyGolden(kGolden, path));
  std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
  ASSERT_EQ(0, cache->Load());
  const Bytes running = B("Portable Computing Language, FULL_PROFILE, OpenCL 3.0 PoCL, 1.1.1");
  ASSERT_NE(nullptr, cache->Find(kPlatformKey));
  ASSERT_NE(running, *cache->Find(kPlatformKey));
  EXPECT_TRUE(cache->Clear());
  EXPECT_EQ(nullptr, cache->Find(kPlatformKey));
  EXPECT_EQ(nullptr, cache->Find(kKnownProgram));
  EXPECT_TRUE(cache->Insert(kDeviceKey, B("pthread-cpu")));
  EXPECT_TRUE(cache->Insert(kNewProgram, B("fresh binary")));
  EXPECT_TRUE(cache->Insert(kPlatformKey, running));
  EXPECT_EQ(0, cache->Flush());
  Entries expected;
  expected[kDeviceKey] = B("pthread-cpu");
  expected[kNewProgram] = B("fresh binary");
  expected[kPlatformKey] = running;
  EXPECT_EQ(expected, StockEntries(path));
}

TEST(DropIn, FirstStartLogsInfoAndCreatesTheFile) {
  test::TempDir dir;
  test::LogCapture log;
  std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
  ASSERT_EQ(0, cache->Load());
  EXPECT_EQ(1, log.Count(MACE_STORAGE_LOG_INFO, dir.Path(kCacheName))) << log.All();
  EXPECT_EQ(0, log.Count(MACE_STORAGE_LOG_WARNING)) << log.All();
  EXPECT_EQ(nullptr, cache->Find(kPlatformKey));
  EXPECT_EQ(0, cache->Flush());
  EXPECT_FALSE(test::Exists(dir.Path(kCacheName)));  // nothing inserted, nothing written
  EXPECT_TRUE(cache->Insert(kPlatformKey, B("platform")));
  EXPECT_TRUE(cache->Insert(kNewProgram, Bytes()));
  EXPECT_EQ(0, cache->Flush());
  Entries expected;
  expected[kPlatformKey] = B("platform");
  expected[kNewProgram] = Bytes();
  EXPECT_EQ(expected, StockEntries(dir.Path(kCacheName)));
}

// A damaged cache file: Load keeps what verified (never a wrong value), and the flush after the
// run leaves a file stock MACE reads.
void CheckDamagedFile(const Bytes &content, bool expect_warning) {
  test::TempDir dir;
  const std::string path = dir.Path(kCacheName);
  ASSERT_TRUE(test::WriteFile(path, content));
  test::LogCapture log;
  std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
  ASSERT_EQ(0, cache->Load());
  if (expect_warning) {
    EXPECT_GE(log.Count(MACE_STORAGE_LOG_WARNING, path), 1) << log.All();
  }
  Entries expected = FoundEntries(cache.get(), GoldenEntries());
  EXPECT_TRUE(cache->Insert(kNewProgram, B("rebuilt binary")));
  EXPECT_TRUE(cache->Insert(kPlatformKey, B("platform")));
  EXPECT_EQ(0, cache->Flush());
  expected[kNewProgram] = B("rebuilt binary");
  expected[kPlatformKey] = B("platform");
  EXPECT_EQ(expected, StockEntries(path));
}

TEST(DropIn, ZeroByteFile) { CheckDamagedFile(Bytes(), false); }

TEST(DropIn, GarbageFile) {
  Bytes garbage;
  for (int i = 0; i < 70000; ++i) garbage.push_back(static_cast<unsigned char>((i * 2654435761u) >> 13));
  CheckDamagedFile(garbage, true);
}

TEST(DropIn, GoldenFileCutInHalf) {
  Bytes cut = test::ReadFile(test::GoldenPath(kGolden));
  ASSERT_FALSE(cut.empty());
  cut.resize(cut.size() / 2);
  CheckDamagedFile(cut, true);
}

TEST(DropIn, GoldenFileLosingItsLastBytes) {
  Bytes cut = test::ReadFile(test::GoldenPath(kGolden));
  ASSERT_GT(cut.size(), 10u);
  cut.resize(cut.size() - 10);
  CheckDamagedFile(cut, true);
}

#ifndef MACE_STORAGE_MACE_1_0
// (Format A has no checksum: a flipped value byte in a stock MACE 1.0 file cannot be detected.)
TEST(DropIn, GoldenFileWithAFlippedByte) {
  Bytes flipped = test::ReadFile(test::GoldenPath(kGolden));
  ASSERT_GT(flipped.size(), 2000u);
  flipped[flipped.size() - 1000] ^= 0x40;
  CheckDamagedFile(flipped, true);
}
#endif

TEST(DropIn, GoldenFileWithAHugeLengthField) {
  Bytes bad = test::ReadFile(test::GoldenPath(kGolden));
  ASSERT_GT(bad.size(), 12u);
#ifdef MACE_STORAGE_MACE_1_0
  bad[11] ^= 0x40;  // the high byte of the first key_len
#else
  // The first pair's length varint becomes 2^32 - 1.
  const unsigned char huge[] = {0xFF, 0xFF, 0xFF, 0xFF, 0x0F};
  std::copy(huge, huge + 5, bad.begin() + 1);
#endif
  CheckDamagedFile(bad, true);
}

// A cache file that cannot be read or written: no abort, Load -1, Flush as the policy says.
void CheckUnusablePath(const std::string &path) {
  test::LogCapture log;
  const uint64_t failures = mace_storage_dropin_flush_failures();
  mace::FileStorage cache(path);
  EXPECT_EQ(-1, cache.Load());
  EXPECT_GE(log.Count(MACE_STORAGE_LOG_WARNING, "Load returned -1"), 1) << log.All();
  EXPECT_EQ(nullptr, cache.Find(kPlatformKey));
  EXPECT_TRUE(cache.Insert(kPlatformKey, B("platform")));
  EXPECT_EQ(kFailedFlush, cache.Flush());
  EXPECT_EQ(kFailedFlush, cache.Flush());
  EXPECT_EQ(failures + 2, mace_storage_dropin_flush_failures());
  EXPECT_EQ(2, log.Count(MACE_STORAGE_LOG_WARNING, kFailedFlushSays)) << log.All();
  ASSERT_NE(nullptr, cache.Find(kPlatformKey));
  EXPECT_EQ(B("platform"), *cache.Find(kPlatformKey));
}

TEST(DropIn, CacheFileThatIsADirectory) {
  test::TempDir dir;
  ASSERT_EQ(0, mkdir(dir.Path(kCacheName).c_str(), 0700));
  CheckUnusablePath(dir.Path(kCacheName));
}

TEST(DropIn, CacheFileUnderARegularFile) {
  test::TempDir dir;
  ASSERT_TRUE(test::WriteFile(dir.Path("file"), B("x")));
  CheckUnusablePath(dir.Path("file") + "/" + kCacheName);
}

TEST(DropIn, MissingDirectoryFlushFailsThenRetries) {
  test::TempDir dir;
  const std::string sub = dir.Path("not_yet");
  test::LogCapture log;
  const uint64_t failures = mace_storage_dropin_flush_failures();
  mace::FileStorageFactory factory(sub);
  std::shared_ptr<mace::KVStorage> cache = factory.CreateStorage(kCacheName);
  ASSERT_EQ(0, cache->Load());
  EXPECT_TRUE(cache->Insert(kPlatformKey, B("platform")));
  EXPECT_EQ(kFailedFlush, cache->Flush());
  EXPECT_EQ(failures + 1, mace_storage_dropin_flush_failures());
  EXPECT_EQ(1, log.Count(MACE_STORAGE_LOG_WARNING, kFailedFlushSays)) << log.All();
  EXPECT_EQ(1, log.Count(MACE_STORAGE_LOG_WARNING, "retried at the next flush")) << log.All();
  // The cache stayed in memory: the next flush, once the directory exists, writes it.
  ASSERT_EQ(0, mkdir(sub.c_str(), 0700));
  EXPECT_EQ(0, cache->Flush());
  EXPECT_EQ(failures + 1, mace_storage_dropin_flush_failures());
  Entries expected;
  expected[kPlatformKey] = B("platform");
  EXPECT_EQ(expected, StockEntries(sub + "/" + kCacheName));
}

// A flush into a directory the process may not write: it fails without aborting the app (MACE
// would abort on -1) and is counted. Returns 0 when every check held, else the failing check's line.
int FlushIntoReadOnlyDirectory(const std::string &sub) {
  if (mkdir(sub.c_str(), 0500) != 0) return __LINE__;
  const uint64_t failures = mace_storage_dropin_flush_failures();
  mace::FileStorage cache(sub + "/" + kCacheName);
  if (cache.Load() != 0) return __LINE__;
  if (!cache.Insert(kPlatformKey, B("platform"))) return __LINE__;
  if (cache.Flush() != kFailedFlush) return __LINE__;
  if (mace_storage_dropin_flush_failures() != failures + 1) return __LINE__;
  if (access((sub + "/" + kCacheName).c_str(), F_OK) == 0) return __LINE__;
  return 0;
}

// Permission bits do not stop root, and CI runs as root: there the check runs in a child that has
// become nobody (uid and gid 65534), in a directory it owns.
TEST(DropIn, ReadOnlyDirectory) {
  test::TempDir dir;
  const std::string sub = dir.Path("read_only");
  if (geteuid() != 0) {
    EXPECT_EQ(0, FlushIntoReadOnlyDirectory(sub));
    chmod(sub.c_str(), 0700);
    return;
  }
  const uid_t nobody = 65534;
  ASSERT_EQ(0, chown(dir.path().c_str(), nobody, nobody));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(nobody) != 0 || setuid(nobody) != 0) _exit(100);
    if (geteuid() != nobody) _exit(101);
    const int line = FlushIntoReadOnlyDirectory(sub);
    if (line != 0) fprintf(stderr, "the check at test_dropin.cc:%d failed as nobody\n", line);
    _exit(line == 0 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(0, WEXITSTATUS(status)) << "100/101: could not become nobody; 1: a check failed";
}

TEST(DropIn, ByteStreamOverTheGoldenFile) {
  Bytes golden = test::ReadFile(test::GoldenPath(kGolden));
  ASSERT_FALSE(golden.empty());
  mace::ReadOnlyByteStreamStorage storage(&golden[0], golden.size());
  // The entries are copied: the bytes may go away.
  Bytes().swap(golden);
  EXPECT_EQ(0, storage.Load());
  std::vector<test::ManifestEntry> manifest = test::Manifest(kGolden);
  ASSERT_EQ(11u, manifest.size());
  for (size_t i = 0; i < manifest.size(); ++i) {
    const std::vector<unsigned char> *v = storage.Find(manifest[i].key);
    ASSERT_NE(nullptr, v) << manifest[i].key;
    EXPECT_EQ(manifest[i].value_crc, test::Crc32(*v));
  }
  test::LogCapture log;
  EXPECT_FALSE(storage.Clear());
  EXPECT_FALSE(storage.Insert(kPlatformKey, B("x")));
  EXPECT_EQ(2, log.Count(MACE_STORAGE_LOG_WARNING, "ignored")) << log.All();
  EXPECT_EQ(0, storage.Flush());
  ASSERT_NE(nullptr, storage.Find(kPlatformKey));
  EXPECT_EQ(162u, storage.Find(kPlatformKey)->size());
}

TEST(DropIn, ByteStreamOverGarbageIsEmpty) {
  test::LogCapture log;
  Bytes garbage = B("\x7f" "ELF not a cache at all, only some bytes that look like nothing");
  mace::ReadOnlyByteStreamStorage storage(&garbage[0], garbage.size());
  EXPECT_GE(log.Count(MACE_STORAGE_LOG_WARNING, "not a cache"), 1) << log.All();
  EXPECT_EQ(0, storage.Load());
  EXPECT_EQ(nullptr, storage.Find(kPlatformKey));
  EXPECT_EQ(0, storage.Flush());
  mace::ReadOnlyByteStreamStorage none(nullptr, 0);
  EXPECT_EQ(nullptr, none.Find(kPlatformKey));
  mace::ReadOnlyByteStreamStorage null_with_size(nullptr, 100);
  EXPECT_EQ(nullptr, null_with_size.Find(kPlatformKey));
}

TEST(DropIn, ByteStreamOverACutFileKeepsOnlyVerifiedValues) {
  Bytes cut = test::ReadFile(test::GoldenPath(kGolden));
  cut.resize(cut.size() - 10);
  mace::ReadOnlyByteStreamStorage storage(&cut[0], cut.size());
  Entries found = FoundEntries(&storage, GoldenEntries());
  EXPECT_LT(found.size(), GoldenEntries().size());
}

TEST(DropIn, FactoryMakesOneFilePerName) {
  test::TempDir dir;
  mace::FileStorageFactory factory(dir.path());
  std::shared_ptr<mace::KVStorage> a = factory.CreateStorage("a.bin");
  std::shared_ptr<mace::KVStorage> b = factory.CreateStorage("b.bin");
  ASSERT_EQ(0, a->Load());
  ASSERT_EQ(0, b->Load());
  EXPECT_TRUE(a->Insert("k", B("a")));
  EXPECT_TRUE(b->Insert("k", B("b")));
  EXPECT_EQ(0, a->Flush());
  EXPECT_EQ(0, b->Flush());
  EXPECT_EQ(B("a"), StockEntries(dir.Path("a.bin"))["k"]);
  EXPECT_EQ(B("b"), StockEntries(dir.Path("b.bin"))["k"]);
}

TEST(DropIn, ThreadsFindInsertFlushOnOneStorage) {
  test::TempDir dir;
  const std::string path = dir.Path(kCacheName);
  ASSERT_TRUE(test::CopyGolden(kGolden, path));
  Entries expected = GoldenEntries();
  mace::FileStorage cache(path);
  ASSERT_EQ(0, cache.Load());
  const int kWriters = 2, kKeys = 40;
  std::vector<int> failures(kWriters + 2, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kWriters; ++t) {
    threads.push_back(std::thread([&, t] {
      for (int i = 0; i < kKeys; ++i) {
        std::string key = "program_" + std::to_string(t) + "_" + std::to_string(i);
        if (!cache.Insert(key, B(key + " binary"))) ++failures[t];
        if (i % 8 == 0 && cache.Flush() != 0) ++failures[t];
      }
    }));
  }
  threads.push_back(std::thread([&] {
    for (int i = 0; i < 200; ++i) {
      const std::vector<unsigned char> *v = cache.Find(kPlatformKey);
      if (v == nullptr || *v != expected[kPlatformKey]) ++failures[kWriters];
    }
  }));
  threads.push_back(std::thread([&] {
    for (int i = 0; i < 5; ++i) {
      if (cache.Flush() != 0) ++failures[kWriters + 1];
    }
  }));
  for (size_t t = 0; t < threads.size(); ++t) threads[t].join();
  for (size_t t = 0; t < failures.size(); ++t) EXPECT_EQ(0, failures[t]) << "thread " << t;
  EXPECT_EQ(0, cache.Flush());
  for (int t = 0; t < kWriters; ++t) {
    for (int i = 0; i < kKeys; ++i) {
      std::string key = "program_" + std::to_string(t) + "_" + std::to_string(i);
      expected[key] = B(key + " binary");
    }
  }
  EXPECT_EQ(expected, StockEntries(path));
  mace::FileStorage reloaded(path);
  ASSERT_EQ(0, reloaded.Load());
  EXPECT_EQ(expected, FoundEntries(&reloaded, expected));
}

// Dies by SIGKILL now, as an app killed by a driver crash or by the system, with everything it
// holds still alive (a storage destroyed first would have ended its mark).
void DieNow() {
  kill(getpid(), SIGKILL);
  _exit(3);
}

// Runs body in a child process that then dies by SIGKILL; returns once it is dead.
template <typename F>
void DieInChild(F body) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    body();
    kill(getpid(), SIGKILL);
    _exit(3);
  }
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  ASSERT_TRUE(WIFSIGNALED(status));
}

// A cache with the golden file's entries, in dir.
void PutGolden(const test::TempDir &dir) {
  test::WriteFile(dir.path() + "/" + kCacheName, test::ReadFile(test::GoldenPath(kGolden)));
}

TEST(DropIn, DeathRightAfterFindLosesOnlyThatProgram) {
  test::TempDir dir;
  PutGolden(dir);
  DieInChild([&] {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    cache->Load();
    cache->Find(kPlatformKey);
    cache->Find(kKnownProgram);  // the driver "crashes" on it
    DieNow();
  });
  std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
  ASSERT_EQ(0, cache->Load());
  EXPECT_EQ(nullptr, cache->Find(kKnownProgram));
  Entries golden = GoldenEntries();
  size_t kept = 0;
  for (Entries::const_iterator it = golden.begin(); it != golden.end(); ++it) {
    if (it->first != kKnownProgram && it->first != std::string(kHashPrefix) + kKnownProgram) {
      const std::vector<unsigned char> *v = cache->Find(it->first);
      ASSERT_NE(nullptr, v) << it->first;
      EXPECT_TRUE(*v == it->second) << it->first;
      ++kept;
    }
  }
  EXPECT_EQ(golden.size() - 2, kept);
}

TEST(DropIn, KillLongAfterTheLastFindLosesNothing) {
  test::TempDir dir;
  PutGolden(dir);
  DieInChild([&] {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    cache->Load();
    cache->Find(kKnownProgram);
    sleep(5);  // the app runs on, then is killed in the background
    DieNow();
  });
  std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
  ASSERT_EQ(0, cache->Load());
  Entries golden = GoldenEntries();
  for (Entries::const_iterator it = golden.begin(); it != golden.end(); ++it) {
    EXPECT_NE(nullptr, cache->Find(it->first)) << it->first;
  }
}

TEST(DropIn, OsBuildChangeDropsTheProgramsAndTheSameBuildKeepsThem) {
  test::TempDir dir;
  PutGolden(dir);
  ASSERT_EQ(0, setenv("MACE_STORAGE_OS_BUILD_ID", "vendor/device:13/TQ1A.221205.011", 1));
  {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    ASSERT_EQ(0, cache->Load());  // first start with an OS id: recorded, nothing dropped
    EXPECT_NE(nullptr, cache->Find(kKnownProgram));
    ASSERT_TRUE(cache->Insert(kNewProgram, B("new binary")));
    ASSERT_EQ(0, cache->Flush());
  }
  {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    ASSERT_EQ(0, cache->Load());  // same build: everything kept
    EXPECT_NE(nullptr, cache->Find(kKnownProgram));
    EXPECT_NE(nullptr, cache->Find(kNewProgram));
  }
  ASSERT_EQ(0, setenv("MACE_STORAGE_OS_BUILD_ID", "vendor/device:14/UP1A.231005.007", 1));
  {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    ASSERT_EQ(0, cache->Load());  // after the OTA: no binary survives
    EXPECT_EQ(nullptr, cache->Find(kKnownProgram));
    EXPECT_EQ(nullptr, cache->Find(kNewProgram));
    EXPECT_EQ(nullptr, cache->Find(kPlatformKey));
  }
  ASSERT_EQ(0, unsetenv("MACE_STORAGE_OS_BUILD_ID"));
}

const char kMaceRunDir[] = "MACE_STORAGE_TEST_MACE_RUN_DIR";
const char kTwentyRunsTest[] = "DropInGuard.TwentyNormalExitsRightAfterFindLoseNothing";

std::vector<std::string> SomePrograms() {
  std::vector<std::string> programs;
  for (int i = 0; i < 6; ++i) programs.push_back("program_" + std::to_string(i) + " -DBIAS");
  return programs;
}

// MACE's sequence as a short command-line run does it, then a normal exit well within the guard's
// window of the last Find: Load, the platform checks, Find of each program's hash and binary, and,
// if any had to be built, the Inserts and the Flush. Writes how many programs it built to
// dir/built.
void MaceRunThenExit(const std::string &dir) {
  const std::vector<std::string> programs = SomePrograms();
  mace::FileStorageFactory factory(dir);
  std::shared_ptr<mace::KVStorage> cache = factory.CreateStorage(kCacheName);
  if (cache->Load() != 0) exit(100);
  cache->Find(kPlatformKey);
  cache->Find(kDeviceKey);
  std::vector<std::string> built;
  for (size_t i = 0; i < programs.size(); ++i) {
    const std::vector<unsigned char> *hash = cache->Find(kHashPrefix + programs[i]);
    const std::vector<unsigned char> *binary = cache->Find(programs[i]);
    // The driver loads the binary here; a missing one is built from source.
    if (hash == nullptr || binary == nullptr || *binary != B(programs[i] + " binary")) {
      built.push_back(programs[i]);
    }
  }
  if (!built.empty()) {
    cache->Insert(kDeviceKey, B("pthread-cpu"));
    for (size_t i = 0; i < built.size(); ++i) {
      cache->Insert(built[i], B(built[i] + " binary"));
      cache->Insert(kHashPrefix + built[i], B("0a1b2c3d4e5f60718293"));
    }
    cache->Insert(kPlatformKey, B("platform"));
    if (cache->Flush() != 0) exit(101);
  }
  test::WriteFile(dir + "/built", B(std::to_string(built.size())));
  exit(0);  // with the storage alive, as MACE's engine often is: atexit ends the mark
}

// Runs MaceRunThenExit in a new process (this test binary, executed afresh) and returns how many
// programs it built, or -1 if it did not exit normally.
int RunMaceInNewProcess(const test::TempDir &dir) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return -1;
  self[n] = '\0';
  const std::string result = dir.Path("built");
  test::WriteFile(result, B("none"));
  const std::string filter = std::string("--gtest_filter=") + kTwentyRunsTest;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    setenv(kMaceRunDir, dir.path().c_str(), 1);
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, STDOUT_FILENO);
    execl(self, self, filter.c_str(), static_cast<char *>(nullptr));
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  const Bytes said = test::ReadFile(result);
  const std::string text(said.begin(), said.end());
  return text == "none" ? -1 : atoi(text.c_str());
}

TEST(DropInGuard, TwentyNormalExitsRightAfterFindLoseNothing) {
  if (const char *dir = getenv(kMaceRunDir)) MaceRunThenExit(dir);
  test::TempDir dir;
  test::LogCapture log;
  const std::vector<std::string> programs = SomePrograms();
  EXPECT_EQ(static_cast<int>(programs.size()), RunMaceInNewProcess(dir));
  for (int run = 1; run < 20; ++run) {
    ASSERT_EQ(0, RunMaceInNewProcess(dir)) << "run " << run << " rebuilt programs";
  }
  const std::string path = dir.Path(kCacheName);
  mace::FileStorage cache(path);
  ASSERT_EQ(0, cache.Load());
  for (size_t i = 0; i < programs.size(); ++i) {
    const std::vector<unsigned char> *v = cache.Find(programs[i]);
    ASSERT_NE(nullptr, v) << programs[i];
    EXPECT_EQ(B(programs[i] + " binary"), *v);
  }
  MaceStorageGuardStats stats = MaceStorageGuardStats();
  ASSERT_EQ(MACE_STORAGE_OK, mace_storage_guard_stats(path.c_str(), &stats));
  EXPECT_EQ(0u, stats.dead_marks);
  EXPECT_EQ(0u, stats.evictions);
  EXPECT_EQ(0, log.Count(MACE_STORAGE_LOG_WARNING, "died")) << log.All();
}

TEST(DropInGuard, TheNextCallEndsTheMark) {
  test::TempDir dir;
  PutGolden(dir);
  DieInChild([&] {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    cache->Load();
    cache->Find(kKnownProgram);
    cache->Find(kPlatformKey);  // the driver returned from the binary: MACE asks for more
    DieNow();
  });
  std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
  ASSERT_EQ(0, cache->Load());
  EXPECT_NE(nullptr, cache->Find(kKnownProgram));
}

TEST(DropInGuard, DestroyingTheStorageEndsTheMark) {
  test::TempDir dir;
  PutGolden(dir);
  DieInChild([&] {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    cache->Load();
    cache->Find(kKnownProgram);
    cache.reset();  // MACE releases its storage once its programs are built
  });
  std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
  ASSERT_EQ(0, cache->Load());
  EXPECT_NE(nullptr, cache->Find(kKnownProgram));
}

TEST(DropInGuard, AnEvictionIsLoggedOnceWithItsKey) {
  test::TempDir dir;
  PutGolden(dir);
  DieInChild([&] {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    cache->Load();
    cache->Find(kKnownProgram);
    DieNow();
  });
  test::LogCapture log;
  mace::FileStorage first(dir.Path(kCacheName));
  ASSERT_EQ(0, first.Load());
  mace::FileStorage second(dir.Path(kCacheName));
  ASSERT_EQ(0, second.Load());
  EXPECT_EQ(nullptr, first.Find(kKnownProgram));
  EXPECT_EQ(1, log.Count(MACE_STORAGE_LOG_WARNING, kKnownProgram)) << log.All();
  MaceStorageGuardStats stats = MaceStorageGuardStats();
  ASSERT_EQ(MACE_STORAGE_OK, mace_storage_guard_stats(dir.Path(kCacheName).c_str(), &stats));
  EXPECT_EQ(1u, stats.dead_marks);
  EXPECT_EQ(1u, stats.evictions);
}

// Item: a flush writes what its storage changed, never deletes what another one committed.
TEST(DropInFlush, TwoStoragesOnOnePathKeepEachOthersPrograms) {
  test::TempDir dir;
  PutGolden(dir);
  const std::string path = dir.Path(kCacheName);
  Entries expected = GoldenEntries();
  mace::FileStorage a(path), b(path);
  ASSERT_EQ(0, a.Load());
  ASSERT_EQ(0, b.Load());
  EXPECT_TRUE(b.Insert("program_x -DX", B("x binary")));
  EXPECT_EQ(0, b.Flush());
  EXPECT_TRUE(a.Insert("program_y -DY", B("y binary")));
  EXPECT_EQ(0, a.Flush());
  expected["program_x -DX"] = B("x binary");
  expected["program_y -DY"] = B("y binary");
  EXPECT_EQ(expected, StockEntries(path));
  // And again the other way round, with a value b replaces.
  EXPECT_TRUE(b.Insert("program_x -DX", B("x binary 2")));
  EXPECT_TRUE(b.Insert("program_z -DZ", B("z binary")));
  EXPECT_EQ(0, b.Flush());
  EXPECT_TRUE(a.Insert(kDeviceKey, B("another device")));
  EXPECT_EQ(0, a.Flush());
  expected["program_x -DX"] = B("x binary 2");
  expected["program_z -DZ"] = B("z binary");
  expected[kDeviceKey] = B("another device");
  EXPECT_EQ(expected, StockEntries(path));
}

TEST(DropInFlush, TwoProcessesOnOnePathKeepEachOthersPrograms) {
  test::TempDir dir;
  PutGolden(dir);
  const std::string path = dir.Path(kCacheName);
  Entries expected = GoldenEntries();
  mace::FileStorage a(path);
  ASSERT_EQ(0, a.Load());
  // Another process loads after a, commits its program, and exits.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    mace::FileStorage b(path);
    bool ok = b.Load() == 0 && b.Insert("program_x -DX", B("x binary")) && b.Flush() == 0;
    if (ok) test::WriteFile(dir.Path("child.ok"), B("1"));
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_TRUE(test::Exists(dir.Path("child.ok")));
  EXPECT_TRUE(a.Insert("program_y -DY", B("y binary")));
  EXPECT_EQ(0, a.Flush());
  expected["program_x -DX"] = B("x binary");
  expected["program_y -DY"] = B("y binary");
  EXPECT_EQ(expected, StockEntries(path));
  // The other process flushes again after a's flush: a's program stays.
  pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    mace::FileStorage b(path);
    bool ok = b.Load() == 0 && b.Insert("program_z -DZ", B("z binary")) && b.Flush() == 0;
    if (ok) test::WriteFile(dir.Path("child2.ok"), B("1"));
    _exit(0);
  }
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_TRUE(test::Exists(dir.Path("child2.ok")));
  expected["program_z -DZ"] = B("z binary");
  EXPECT_EQ(expected, StockEntries(path));
}

TEST(DropInFlush, ClearThenFlushLeavesOnlyWhatFollowedTheClear) {
  test::TempDir dir;
  PutGolden(dir);
  const std::string path = dir.Path(kCacheName);
  mace::FileStorage a(path), b(path);
  ASSERT_EQ(0, a.Load());
  ASSERT_EQ(0, b.Load());
  EXPECT_TRUE(b.Insert("program_x -DX", B("x binary")));
  EXPECT_EQ(0, b.Flush());
  // a's platform changed: MACE clears and rebuilds.
  EXPECT_TRUE(a.Clear());
  EXPECT_TRUE(a.Insert(kPlatformKey, B("new platform")));
  EXPECT_TRUE(a.Insert(kNewProgram, B("fresh binary")));
  EXPECT_EQ(0, a.Flush());
  Entries expected;
  expected[kPlatformKey] = B("new platform");
  expected[kNewProgram] = B("fresh binary");
  EXPECT_EQ(expected, StockEntries(path));
  // After that flush, a's next flush is an ordinary one again: it keeps what others add.
  EXPECT_TRUE(b.Insert("program_z -DZ", B("z binary")));
  EXPECT_EQ(0, b.Flush());
  EXPECT_TRUE(a.Insert("program_w -DW", B("w binary")));
  EXPECT_EQ(0, a.Flush());
  expected["program_z -DZ"] = B("z binary");
  expected["program_w -DW"] = B("w binary");
  EXPECT_EQ(expected, StockEntries(path));
}

// Item: a start costs the programs MACE uses. The key of the i-th program of WriteManyPrograms.
std::string ProgramKey(int i) {
  return "program_" + std::to_string(i) + " -DBIAS -DCMD_DATA_TYPE=f";
}

// A cache of `programs` binaries with their hashes and the platform entry, written in the format
// this build writes; returns its entries.
Entries WriteManyPrograms(const std::string &path, int programs) {
  Entries written;
  written[kPlatformKey] = B("platform");
  for (int i = 0; i < programs; ++i) {
    const std::string key = ProgramKey(i);
    Bytes value(1000 + 37 * i);
    for (size_t j = 0; j < value.size(); ++j) {
      value[j] = static_cast<unsigned char>(i * 131 + j * 7);
    }
    written[key] = value;
    written[kHashPrefix + key] = B("0a1b2c3d4e5f6071829" + std::to_string(i % 10));
  }
  MaceStorageOptions options = MaceStorageOptions();
  options.format = kWrittenFormat;
  options.quiet = 1;
  MaceStorage *s = nullptr;
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_open(path.c_str(), &options, &s));
  for (Entries::const_iterator it = written.begin(); it != written.end(); ++it) {
    EXPECT_EQ(MACE_STORAGE_OK,
              mace_storage_put(s, reinterpret_cast<const uint8_t *>(it->first.data()),
                               it->first.size(), it->second.data(), it->second.size()));
  }
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  mace_storage_close(s);
  return written;
}

// The counters of the store the drop-in keeps open for path; a failure if none is open.
MaceStorageStats DropInStats(const std::string &path) {
  MaceStorageStats stats = MaceStorageStats();
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_dropin_stats(path.c_str(), &stats)) << path;
  return stats;
}

TEST(DropInLazy, FindCopiesOnlyTheValuesMaceAsksFor) {
  test::TempDir dir;
  const std::string path = dir.Path(kCacheName);
  Entries written = WriteManyPrograms(path, 150);
  std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
  ASSERT_EQ(0, cache->Load());
  // Load indexed the keys: no value was got from the store.
  MaceStorageStats stats = DropInStats(path);
  EXPECT_EQ(301u, stats.entries);
  EXPECT_EQ(0u, stats.hits);
  EXPECT_EQ(0u, stats.misses);
  std::vector<const std::vector<unsigned char> *> found;
  const int wanted[] = {3, 77, 149};
  for (size_t i = 0; i < 3; ++i) {
    const std::vector<unsigned char> *v = cache->Find(ProgramKey(wanted[i]));
    ASSERT_NE(nullptr, v) << wanted[i];
    EXPECT_EQ(written[ProgramKey(wanted[i])], *v);
    found.push_back(v);
  }
  // Each value copied once, on its first Find; a second Find hands out the same copy.
  EXPECT_EQ(3u, DropInStats(path).hits);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(found[i], cache->Find(ProgramKey(wanted[i])));
  EXPECT_EQ(3u, DropInStats(path).hits);
  // A key the file does not hold is answered from the index.
  EXPECT_EQ(nullptr, cache->Find("absent -DX"));
  EXPECT_EQ(0u, DropInStats(path).misses);
  // Re-inserting a stored value is no change, whether it was copied or not: nothing to flush.
  EXPECT_TRUE(cache->Insert(kPlatformKey, B("platform")));
  EXPECT_TRUE(cache->Insert(ProgramKey(3), written[ProgramKey(3)]));
  EXPECT_EQ(0, cache->Flush());
  EXPECT_EQ(0u, DropInStats(path).flushes);
  EXPECT_EQ(found[0], cache->Find(ProgramKey(3)));
}

TEST(DropInLazy, FlushAfterOneInsertCommitsThroughTheLoadedStoreWithoutReadingTheFile) {
  test::TempDir dir;
  const std::string path = dir.Path(kCacheName);
  Entries expected = WriteManyPrograms(path, 100);
  const Bytes before = test::ReadFile(path);
  std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
  ASSERT_EQ(0, cache->Load());
  ASSERT_NE(nullptr, cache->Find(ProgramKey(5)));
  Bytes binary(100 * 1024);
  for (size_t j = 0; j < binary.size(); ++j) binary[j] = static_cast<unsigned char>(j * 13 + 5);
  EXPECT_TRUE(cache->Insert(kNewProgram, binary));
  EXPECT_EQ(0, cache->Flush());
  MaceStorageStats stats = DropInStats(path);
  // The store Load opened (its get is still counted), flushed once, and the file not read again.
  EXPECT_EQ(1u, stats.hits);
  EXPECT_EQ(1u, stats.flushes);
  EXPECT_EQ(0u, stats.merges);
  EXPECT_EQ(0u, stats.flush_failures);
#ifdef MACE_STORAGE_MACE_1_0
  EXPECT_EQ(1u, stats.rewrites);  // checked-1.0 has no append
#else
  EXPECT_EQ(1u, stats.appends);
  EXPECT_LT(stats.bytes_written, binary.size() + 1024);
  const Bytes after = test::ReadFile(path);
  EXPECT_TRUE(std::equal(before.begin(), before.end() - 4, after.begin()));
#endif
  expected[kNewProgram] = binary;
  EXPECT_EQ(expected, StockEntries(path));
  // A later flush with nothing new does nothing.
  EXPECT_EQ(0, cache->Flush());
  EXPECT_EQ(1u, DropInStats(path).flushes);
}

TEST(DropInLazy, StoragesOnOnePathShareOneStoreUntilTheLastIsGone) {
  test::TempDir dir;
  const std::string path = dir.Path(kCacheName);
  Entries written = WriteManyPrograms(path, 10);
  std::shared_ptr<mace::KVStorage> a = CacheIn(dir), b = CacheIn(dir);
  ASSERT_EQ(0, a->Load());
  ASSERT_EQ(0, b->Load());
  ASSERT_NE(nullptr, a->Find(ProgramKey(1)));
  ASSERT_NE(nullptr, b->Find(ProgramKey(1)));
  EXPECT_EQ(2u, DropInStats(path).hits);  // one store: both gets counted there
  EXPECT_TRUE(a->Insert("program_x -DX", B("x binary")));
  EXPECT_EQ(0, a->Flush());
  // A storage loaded after that flush sees it, from the same store, without reading the file.
  std::shared_ptr<mace::KVStorage> c = CacheIn(dir);
  ASSERT_EQ(0, c->Load());
  const std::vector<unsigned char> *x = c->Find("program_x -DX");
  ASSERT_NE(nullptr, x);
  EXPECT_EQ(B("x binary"), *x);
  EXPECT_EQ(0u, DropInStats(path).merges);
  // Once every storage that used it is gone, the store is closed; the next Load opens it anew.
  a.reset();
  b.reset();
  EXPECT_EQ(3u, DropInStats(path).hits);  // still open: c uses it
  c.reset();
  MaceStorageStats none = MaceStorageStats();
  EXPECT_EQ(MACE_STORAGE_NOT_FOUND, mace_storage_dropin_stats(path.c_str(), &none));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_dropin_stats(nullptr, &none));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_dropin_stats(path.c_str(), nullptr));
  std::shared_ptr<mace::KVStorage> d = CacheIn(dir);
  ASSERT_EQ(0, d->Load());
  EXPECT_EQ(0u, DropInStats(path).hits);
  ASSERT_NE(nullptr, d->Find("program_x -DX"));
  EXPECT_EQ(written[ProgramKey(9)], *d->Find(ProgramKey(9)));
}

TEST(DropInLazy, ConcurrentFindsCopyEachValueOnce) {
  test::TempDir dir;
  const std::string path = dir.Path(kCacheName);
  const int kPrograms = 64, kThreads = 4;
  const Entries written = WriteManyPrograms(path, kPrograms);
  mace::FileStorage cache(path);
  ASSERT_EQ(0, cache.Load());
  std::vector<std::vector<const std::vector<unsigned char> *>> seen(
      kThreads, std::vector<const std::vector<unsigned char> *>(kPrograms, nullptr));
  std::vector<int> wrong(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.push_back(std::thread([&, t] {
      for (int n = 0; n < kPrograms; ++n) {
        const int i = (t % 2 == 0) ? n : kPrograms - 1 - n;  // half the threads backwards
        const std::vector<unsigned char> *v = cache.Find(ProgramKey(i));
        if (v == nullptr || *v != written.find(ProgramKey(i))->second) ++wrong[t];
        seen[t][i] = v;
      }
    }));
  }
  for (size_t t = 0; t < threads.size(); ++t) threads[t].join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(0, wrong[t]) << "thread " << t;
    EXPECT_EQ(seen[0], seen[t]) << "thread " << t << " got another copy";
  }
  EXPECT_EQ(static_cast<uint64_t>(kPrograms), DropInStats(path).hits);
}

#ifndef MACE_STORAGE_MACE_1_0
// Flips one byte of the file at path, inside the value given (found once in it), in place.
void FlipInsideValue(const std::string &path, const Bytes &value) {
  const Bytes file = test::ReadFile(path);
  Bytes::const_iterator at = std::search(file.begin(), file.end(), value.begin(), value.end());
  ASSERT_NE(file.end(), at);
  ASSERT_EQ(file.end(), std::search(at + 1, file.end(), value.begin(), value.end()));
  const long offset = static_cast<long>(at - file.begin()) + 10;
  const unsigned char flipped = static_cast<unsigned char>(file[offset] ^ 0x08);
  FILE *f = fopen(path.c_str(), "r+b");
  ASSERT_NE(nullptr, f);
  ASSERT_EQ(0, fseek(f, offset, SEEK_SET));
  ASSERT_EQ(1u, fwrite(&flipped, 1, 1, f));
  ASSERT_EQ(0, fclose(f));
}

// Find reads a value into MACE's map and verifies it there, the store keeping no copy: another
// storage on the path reads the file again (a value damaged since is then found, never returned),
// and a value that fails its checksum leaves no entry in the map.
TEST(DropInLazy, FindReadsIntoTheMapAndTheStoreKeepsNoCopy) {
  test::TempDir dir;
  const std::string path = dir.Path(kCacheName);
  Entries written = WriteManyPrograms(path, 3);  // more: a value may hold another's bytes
  FlipInsideValue(path, written[ProgramKey(2)]);
  std::shared_ptr<mace::KVStorage> a = CacheIn(dir), b = CacheIn(dir);
  ASSERT_EQ(0, a->Load());
  ASSERT_EQ(0, b->Load());
  EXPECT_EQ(nullptr, a->Find(ProgramKey(2)));
  EXPECT_EQ(nullptr, a->Find(ProgramKey(2)));
  EXPECT_EQ(1u, DropInStats(path).entries_dropped);
  const std::vector<unsigned char> *one = a->Find(ProgramKey(1));
  ASSERT_NE(nullptr, one);
  EXPECT_EQ(written[ProgramKey(1)], *one);
  FlipInsideValue(path, written[ProgramKey(1)]);
  EXPECT_EQ(nullptr, b->Find(ProgramKey(1))) << "a value damaged on disk was returned";
  EXPECT_EQ(2u, DropInStats(path).entries_dropped);
  EXPECT_EQ(written[ProgramKey(1)], *a->Find(ProgramKey(1)));  // a's copy, verified when read
  EXPECT_EQ(one, a->Find(ProgramKey(1)));
}
#endif

}  // namespace

// MACE_STORAGE_BUDGET_MIB bounds the file: the flush that would outgrow it evicts the least
// recently used programs first, and the newest survive.
TEST(DropInBudget, TheEnvironmentsBudgetKeepsTheFileWithinItAndTheNewestPrograms) {
  test::TempDir dir;
  const std::string path = dir.Path(kCacheName);
  ASSERT_EQ(0, setenv("MACE_STORAGE_BUDGET_MIB", "2", 1));
  {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    ASSERT_EQ(0, cache->Load());
    EXPECT_TRUE(cache->Insert(kPlatformKey, B("platform")));
    for (int i = 0; i < 6; ++i) {
      Bytes binary(512 * 1024, static_cast<unsigned char>(i));
      EXPECT_TRUE(cache->Insert(ProgramKey(i), binary));
      EXPECT_EQ(0, cache->Flush());
      EXPECT_LE(test::ReadFile(path).size(), 2u << 20) << "after program " << i;
    }
    EXPECT_GT(DropInStats(path).evictions, 0u);
  }
  ASSERT_EQ(0, unsetenv("MACE_STORAGE_BUDGET_MIB"));
  const Entries kept = StockEntries(path);
  EXPECT_EQ(1u, kept.count(ProgramKey(5)));
  EXPECT_EQ(1u, kept.count(ProgramKey(4)));
  EXPECT_EQ(0u, kept.count(ProgramKey(0)));
  EXPECT_EQ(1u, kept.count(kPlatformKey));
}
