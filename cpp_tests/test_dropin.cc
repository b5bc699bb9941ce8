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
#include "dropin_test_support.h"
#include "support/test_support.h"

namespace {

using namespace dropin_test;  // NOLINT(build/namespaces): the shared names of the drop-in tests

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

#ifndef MACE_STORAGE_MACE_1_0
// A start on a checked-1.1 file (read lazily: only its format is) leaves in the lock file, from
// offset 64, the read-ahead note of the records it read, for the next start to have the kernel
// read them before MACE asks; the next start still finds every value, each verified.
TEST(DropIn, AStartLeavesTheReadAheadNoteAndTheNextFindsEveryValue) {
  test::TempDir dir;
  PutGolden(dir);
  Entries expected = GoldenEntries();
  const Bytes binary = test::ReadFile(test::GoldenPath("pocl-program-a.bin"));
  {
    // The first flush of a stock file rewrites it as checked-1.1.
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    ASSERT_EQ(0, cache->Load());
    EXPECT_TRUE(cache->Insert(kNewProgram, binary));
    ASSERT_EQ(0, cache->Flush());
  }
  expected[kNewProgram] = binary;
  const std::string lock = dir.Path(std::string(kCacheName) + ".lock");
  const Bytes before = test::ReadFile(lock);
  EXPECT_GE(64u, before.size()) << "no read-ahead note before a lazy start read anything";
  {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    ASSERT_EQ(0, cache->Load());
    ASSERT_NE(nullptr, cache->Find(kKnownProgram));
    ASSERT_NE(nullptr, cache->Find(kNewProgram));
  }
  const Bytes note = test::ReadFile(lock);
  ASSERT_GT(note.size(), 64u + 36u);
  EXPECT_EQ("MSREAD01", std::string(note.begin() + 64, note.begin() + 72));
  {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    ASSERT_EQ(0, cache->Load());
    EXPECT_EQ(expected, FoundEntries(cache.get(), expected));
  }
}
#endif

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

}  // namespace
