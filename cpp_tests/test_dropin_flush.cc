// The MACE drop-in's flushes, its lazy start and its size budget (src/cpp/mace_kv_storage.cc),
// built with test_dropin.cc into the same three test programs: for MACE 1.1, for MACE 1.0
// (MACE_STORAGE_MACE_1_0) and with MACE_STORAGE_STRICT_FLUSH.
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
  // A key the file does not hold is a miss of the store's, and takes no entry in the map.
  EXPECT_EQ(nullptr, cache->Find("absent -DX"));
  EXPECT_EQ(1u, DropInStats(path).misses);
  EXPECT_EQ(nullptr, cache->Find("absent -DX"));
  EXPECT_EQ(2u, DropInStats(path).misses);
  // Re-inserting a stored value is no change, whether it was copied or not: nothing to flush.
  EXPECT_TRUE(cache->Insert(kPlatformKey, B("platform")));
  EXPECT_TRUE(cache->Insert(ProgramKey(3), written[ProgramKey(3)]));
  EXPECT_EQ(0, cache->Flush());
  EXPECT_EQ(0u, DropInStats(path).flushes);
  EXPECT_EQ(found[0], cache->Find(ProgramKey(3)));
  // MACE inserts a program it found missing once built: the store is not asked again.
  EXPECT_TRUE(cache->Insert("absent -DX", B("x binary")));
  EXPECT_EQ(2u, DropInStats(path).misses);
  EXPECT_EQ(0, cache->Flush());
  EXPECT_EQ(1u, DropInStats(path).flushes);
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

// A start that only finds programs (MACE flushes only after building some) records which it used
// when its storage goes away, so that a later eviction keeps them over programs nobody asked for.
TEST(DropInBudget, AStartThatOnlyFindsRecordsItsUsesForTheNextEviction) {
  test::TempDir dir;
  const std::string path = dir.Path(kCacheName);
  ASSERT_EQ(0, setenv("MACE_STORAGE_BUDGET_MIB", "2", 1));
  const Bytes binary(512 * 1024, 7);
  {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    ASSERT_EQ(0, cache->Load());
    EXPECT_TRUE(cache->Insert(kPlatformKey, B("platform")));
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(cache->Insert(ProgramKey(i), binary));
    EXPECT_EQ(0, cache->Flush());
  }
  const size_t before = test::ReadFile(path).size();
  {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    ASSERT_EQ(0, cache->Load());
    ASSERT_NE(nullptr, cache->Find(ProgramKey(0)));
  }
  EXPECT_GT(test::ReadFile(path).size(), before) << "no use record was written";
  {
    std::shared_ptr<mace::KVStorage> cache = CacheIn(dir);
    ASSERT_EQ(0, cache->Load());
    EXPECT_TRUE(cache->Insert(ProgramKey(3), binary));
    EXPECT_EQ(0, cache->Flush());
    EXPECT_GT(DropInStats(path).evictions, 0u);
  }
  ASSERT_EQ(0, unsetenv("MACE_STORAGE_BUDGET_MIB"));
  EXPECT_LE(test::ReadFile(path).size(), 2u << 20);
  const Entries kept = StockEntries(path);
  EXPECT_EQ(1u, kept.count(ProgramKey(0))) << "the program the second start used was evicted";
  EXPECT_EQ(1u, kept.count(ProgramKey(3)));
  EXPECT_EQ(0u, kept.count(ProgramKey(1)));
}

}  // namespace
