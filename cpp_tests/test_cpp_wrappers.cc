// The C++ header mace_storage.hpp: the RAII wrappers, and the adapter implementing MACE's
// KVStorage interface (built against the MACE interface header in mace_interface/).
#define MACE_STORAGE_WITH_MACE_INTERFACE
#include "mace_storage.hpp"

#include <string.h>
#include <sys/stat.h>

#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "support/test_support.h"

namespace {

using mace_storage::Storage;
using mace_storage::Value;
using test::B;
using test::Bytes;

const char kPlatformKey[] = "mace_opencl_precompiled_platform_info_key";

std::string Str(const Value &v) {
  return std::string(reinterpret_cast<const char *>(v.data()), v.size());
}

static_assert(!std::is_copy_constructible<Value>::value, "Value is move-only");
static_assert(!std::is_copy_assignable<Value>::value, "Value is move-only");
static_assert(std::is_nothrow_move_constructible<Value>::value, "Value moves");
static_assert(!std::is_copy_constructible<Storage>::value, "Storage is move-only");
static_assert(!std::is_copy_assignable<Storage>::value, "Storage is move-only");
static_assert(std::is_nothrow_move_constructible<Storage>::value, "Storage moves");

TEST(CppWrappers, VersionMatchesHeader) { EXPECT_EQ(MACE_STORAGE_VERSION, mace_storage::Version()); }

TEST(CppWrappers, OpenPutGetRemoveClearFlush) {
  test::TempDir dir;
  Storage s;
  EXPECT_FALSE(s.is_open());
  ASSERT_EQ(MACE_STORAGE_OK, Storage::Open(dir.Path("cache.bin"), nullptr, &s)) << s.LastError();
  EXPECT_TRUE(s.is_open());
  EXPECT_NE(nullptr, s.handle());
  EXPECT_EQ(MACE_STORAGE_OK, s.Put(kPlatformKey, B("platform")));
  EXPECT_EQ(MACE_STORAGE_OK, s.Put("program", "bin\0ary", 7));
  EXPECT_EQ(MACE_STORAGE_OK, s.Put("empty", Bytes()));
  Value v;
  EXPECT_FALSE(v.has_value());
  EXPECT_EQ(nullptr, v.data());
  EXPECT_EQ(0u, v.size());
  ASSERT_EQ(MACE_STORAGE_OK, s.Get("program", &v));
  EXPECT_TRUE(v.has_value());
  EXPECT_EQ(std::string("bin\0ary", 7), Str(v));
  EXPECT_EQ(B(std::string("bin\0ary", 7)), v.ToVector());
  ASSERT_EQ(MACE_STORAGE_OK, s.Get("empty", &v));
  EXPECT_TRUE(v.has_value());
  EXPECT_EQ(0u, v.size());
  EXPECT_EQ(MACE_STORAGE_NOT_FOUND, s.Get("absent", &v));
  EXPECT_FALSE(v.has_value());
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, s.Get("program", nullptr));
  EXPECT_NE("", s.LastError());
  EXPECT_EQ(MACE_STORAGE_OK, s.Remove("empty"));
  EXPECT_EQ(MACE_STORAGE_NOT_FOUND, s.Remove("empty"));
  EXPECT_EQ(MACE_STORAGE_OK, s.Flush());

  MaceStorageStats stats;
  ASSERT_EQ(MACE_STORAGE_OK, s.Stats(&stats));
  EXPECT_EQ(2u, stats.entries);
  EXPECT_EQ(1u, stats.flushes);
  s.Close();
  EXPECT_FALSE(s.is_open());
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, s.Flush());

  ASSERT_EQ(MACE_STORAGE_OK, Storage::Open(dir.Path("cache.bin"), nullptr, &s));
  MaceStorageOpenReport report;
  ASSERT_EQ(MACE_STORAGE_OK, s.Report(&report));
  EXPECT_EQ(1, report.intact);
  EXPECT_EQ(2u, report.entries);
  EXPECT_EQ("", s.Notes());
  ASSERT_EQ(MACE_STORAGE_OK, s.Get("program", &v));
  EXPECT_EQ(7u, v.size());
  EXPECT_EQ(MACE_STORAGE_OK, s.Clear());
  EXPECT_EQ(MACE_STORAGE_NOT_FOUND, s.Get(kPlatformKey, &v));
}

TEST(CppWrappers, FailedOpenLeavesStorageClosedWithAnError) {
  test::TempDir dir;
  ASSERT_TRUE(test::WriteFile(dir.Path("file"), B("x")));
  Storage s;
  ASSERT_EQ(MACE_STORAGE_OK, Storage::Open(dir.Path("cache.bin"), nullptr, &s));
  EXPECT_EQ(MACE_STORAGE_IO_ERROR, Storage::Open(dir.Path("file/cache.bin"), nullptr, &s));
  EXPECT_FALSE(s.is_open());
  EXPECT_NE("", s.LastError());
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, Storage::Open(dir.Path("cache.bin"), nullptr, nullptr));
  MaceStorageOptions bad = MaceStorageOptions();
  bad.format = 1000;
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, Storage::Open(dir.Path("cache.bin"), &bad, &s));
  EXPECT_FALSE(s.is_open());
}

TEST(CppWrappers, MovesTransferOwnership) {
  test::TempDir dir;
  Storage a;
  ASSERT_EQ(MACE_STORAGE_OK, Storage::Open(dir.Path("cache.bin"), nullptr, &a));
  ASSERT_EQ(MACE_STORAGE_OK, a.Put("k", B("value")));
  Storage b(std::move(a));
  EXPECT_FALSE(a.is_open());
  EXPECT_TRUE(b.is_open());
  Value v;
  ASSERT_EQ(MACE_STORAGE_OK, b.Get("k", &v));
  Value w(std::move(v));
  EXPECT_FALSE(v.has_value());
  EXPECT_EQ("value", Str(w));
  Storage c;
  c = std::move(b);
  EXPECT_FALSE(b.is_open());
  ASSERT_EQ(MACE_STORAGE_OK, c.Put("k", B("other")));
  c.Close();
  // The value outlives overwrite and close.
  EXPECT_EQ("value", Str(w));
  v = std::move(w);
  EXPECT_EQ("value", Str(v));
}

TEST(CppWrappers, ForEachTakesAnyCallableAndStops) {
  test::TempDir dir;
  Storage s;
  ASSERT_EQ(MACE_STORAGE_OK, Storage::Open(dir.Path("cache.bin"), nullptr, &s));
  ASSERT_EQ(MACE_STORAGE_OK, s.Put("b", B("22")));
  ASSERT_EQ(MACE_STORAGE_OK, s.Put("a", B("1")));
  ASSERT_EQ(MACE_STORAGE_OK, s.Put("c", B("333")));
  std::vector<std::string> seen;
  size_t bytes = 0;
  EXPECT_EQ(MACE_STORAGE_OK, s.ForEach([&](const std::string &key, const uint8_t *, size_t n) {
    seen.push_back(key);
    bytes += n;
    return true;
  }));
  const char *want[] = {"a", "b", "c"};
  EXPECT_EQ(std::vector<std::string>(want, want + 3), seen);
  EXPECT_EQ(6u, bytes);

  int calls = 0;
  auto stop_at_first = [&calls](const std::string &, const uint8_t *, size_t) {
    ++calls;
    return false;
  };
  EXPECT_EQ(MACE_STORAGE_OK, s.ForEach(stop_at_first));
  EXPECT_EQ(1, calls);

  struct Counter {
    int *n;
    bool operator()(const std::string &, const uint8_t *, size_t) const { return ++*n < 100; }
  };
  int counted = 0;
  const Counter counter = {&counted};
  EXPECT_EQ(MACE_STORAGE_OK, s.ForEach(counter));
  EXPECT_EQ(3, counted);
  Storage closed;
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, closed.ForEach(counter));
}

TEST(CppWrappers, ForEachKeyVisitsTheKeysInOrderAndStops) {
  test::TempDir dir;
  Storage s;
  ASSERT_EQ(MACE_STORAGE_OK, Storage::Open(dir.Path("cache.bin"), nullptr, &s));
  ASSERT_EQ(MACE_STORAGE_OK, s.Put("b", B("22")));
  ASSERT_EQ(MACE_STORAGE_OK, s.Put("a", B("1")));
  ASSERT_EQ(MACE_STORAGE_OK, s.Put("c", B("333")));
  std::vector<std::string> seen;
  EXPECT_EQ(MACE_STORAGE_OK, s.ForEachKey([&seen](const std::string &key) {
    seen.push_back(key);
    return true;
  }));
  const char *want[] = {"a", "b", "c"};
  EXPECT_EQ(std::vector<std::string>(want, want + 3), seen);
  int calls = 0;
  EXPECT_EQ(MACE_STORAGE_OK, s.ForEachKey([&calls](const std::string &) {
    ++calls;
    return false;
  }));
  EXPECT_EQ(1, calls);
  MaceStorageStats stats = MaceStorageStats();
  ASSERT_EQ(MACE_STORAGE_OK, s.Stats(&stats));
  EXPECT_EQ(0u, stats.hits + stats.misses);
  Storage closed;
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, closed.ForEachKey([](const std::string &) {
    return true;
  }));
}

TEST(CppWrappers, ResetProgramCacheSetsTheFileAside) {
  test::TempDir dir;
  const std::string path = dir.path() + "/mace_cl_compiled_program.bin";
  ASSERT_TRUE(test::WriteFile(path, test::ReadFile(test::GoldenPath("mace-1.1-cache.bin"))));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage::ResetProgramCache(path));
  EXPECT_FALSE(test::Exists(path));
  EXPECT_TRUE(test::Exists(path + ".crashloop"));
  // Nothing to set aside is no error; the next start begins empty.
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage::ResetProgramCache(path));
  mace_storage::ProgramCache cache;
  ASSERT_EQ(MACE_STORAGE_OK, mace_storage::ProgramCache::Open(path, nullptr, &cache));
  MaceProgramCacheStats stats = MaceProgramCacheStats();
  ASSERT_EQ(MACE_STORAGE_OK, cache.Stats(&stats));
  EXPECT_EQ(0u, stats.hits + stats.misses);
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage::ProgramCache().Stats(&stats));
}

TEST(CppWrappers, OpenBytesIsReadOnly) {
  Bytes golden = test::ReadFile(test::GoldenPath("mace-1.1-cache.bin"));
  ASSERT_FALSE(golden.empty());
  Storage s;
  ASSERT_EQ(MACE_STORAGE_OK, Storage::OpenBytes(&golden[0], golden.size(), &s));
  Value v;
  ASSERT_EQ(MACE_STORAGE_OK, s.Get(kPlatformKey, &v));
  EXPECT_EQ(162u, v.size());
  EXPECT_EQ(MACE_STORAGE_READ_ONLY, s.Put("k", B("v")));
  EXPECT_EQ(MACE_STORAGE_READ_ONLY, s.Flush());
  Bytes garbage = B("no cache here, just words");
  EXPECT_EQ(MACE_STORAGE_CORRUPT, Storage::OpenBytes(&garbage[0], garbage.size(), &s));
  EXPECT_FALSE(s.is_open());
}

TEST(KVStorageAdapter, MaceCallSequenceThroughTheFactory) {
  test::TempDir dir;
  ASSERT_TRUE(test::CopyGolden("mace-1.1-cache.bin", dir.Path("mace_cl_compiled_program.bin")));
  mace_storage::KVStorageAdapterFactory factory(dir.path());
  mace::KVStorageFactory *base = &factory;
  std::shared_ptr<mace::KVStorage> cache = base->CreateStorage("mace_cl_compiled_program.bin");
  ASSERT_EQ(0, cache->Load());
  std::vector<test::ManifestEntry> manifest = test::Manifest("mace-1.1-cache.bin");
  ASSERT_EQ(11u, manifest.size());
  std::vector<const std::vector<unsigned char> *> found;
  for (size_t i = 0; i < manifest.size(); ++i) {
    const std::vector<unsigned char> *v = cache->Find(manifest[i].key);
    ASSERT_NE(nullptr, v) << manifest[i].key;
    EXPECT_EQ(manifest[i].value_len, v->size());
    EXPECT_EQ(manifest[i].value_crc, test::Crc32(*v));
    found.push_back(v);
  }
  EXPECT_EQ(found[0], cache->Find(manifest[0].key));
  EXPECT_EQ(nullptr, cache->Find("new_kernel -DX=1"));
  EXPECT_TRUE(cache->Insert("new_kernel -DX=1", B("new binary")));
  EXPECT_TRUE(cache->Insert("program_hash_ new_kernel -DX=1", B("0123456789abcdef0123")));
  // A pointer from Find follows an overwrite of its key and survives writes of other keys.
  EXPECT_TRUE(cache->Insert(manifest[6].key, B("another device")));
  EXPECT_EQ(B("another device"), *found[6]);
  EXPECT_EQ(manifest[7].value_crc, test::Crc32(*found[7]));
  EXPECT_EQ(0, cache->Flush());

  test::StockView view =
      test::StockRead11(test::ReadFile(dir.Path("mace_cl_compiled_program.bin")));
  ASSERT_TRUE(view.loads) << view.why;
  EXPECT_EQ(0, view.duplicates);
  EXPECT_EQ(manifest.size() + 2, view.entries.size());
  EXPECT_EQ(B("new binary"), view.entries["new_kernel -DX=1"]);
  EXPECT_EQ(B("another device"), view.entries[manifest[6].key]);

  std::shared_ptr<mace::KVStorage> again = factory.CreateStorage("mace_cl_compiled_program.bin");
  ASSERT_EQ(0, again->Load());
  ASSERT_NE(nullptr, again->Find("new_kernel -DX=1"));
  EXPECT_EQ(B("new binary"), *again->Find("new_kernel -DX=1"));
  EXPECT_TRUE(again->Clear());
  EXPECT_EQ(nullptr, again->Find("new_kernel -DX=1"));
  EXPECT_TRUE(again->Insert(kPlatformKey, B("new platform")));
  EXPECT_EQ(0, again->Flush());
  view = test::StockRead11(test::ReadFile(dir.Path("mace_cl_compiled_program.bin")));
  ASSERT_TRUE(view.loads) << view.why;
  EXPECT_EQ(1u, view.entries.size());
}

TEST(KVStorageAdapter, FormatOptionWritesMace10Readable) {
  test::TempDir dir;
  MaceStorageOptions options = MaceStorageOptions();
  options.format = MACE_STORAGE_FORMAT_CHECKED_1_0;
  mace_storage::KVStorageAdapter cache(dir.Path("cache.bin"), &options);
  ASSERT_EQ(0, cache.Load());
  EXPECT_TRUE(cache.Insert(kPlatformKey, B("platform")));
  EXPECT_EQ(0, cache.Flush());
  test::StockView view = test::StockRead10(test::ReadFile(dir.Path("cache.bin")));
  ASSERT_TRUE(view.loads) << view.why;
  EXPECT_EQ(B("platform"), view.entries[kPlatformKey]);
  MaceStorageOpenReport report;
  EXPECT_EQ(MACE_STORAGE_OK, cache.storage().Report(&report));
  EXPECT_EQ(1, report.missing);
}

TEST(KVStorageAdapter, FailedFlushWarnsAndFollowsThePolicy) {
  test::TempDir dir;
  test::LogCapture log;
  mace_storage::KVStorageAdapter lenient(dir.Path("missing/cache.bin"));
  mace_storage::KVStorageAdapter strict(dir.Path("missing/cache.bin"), nullptr, true);
  ASSERT_EQ(0, lenient.Load());
  ASSERT_EQ(0, strict.Load());
  EXPECT_TRUE(lenient.Insert("k", B("v")));
  EXPECT_TRUE(strict.Insert("k", B("v")));
  EXPECT_EQ(0, lenient.Flush());
  EXPECT_EQ(-1, strict.Flush());
  EXPECT_EQ(1, log.Count(MACE_STORAGE_LOG_WARNING, "returned success so MACE keeps running"))
      << log.All();
  MaceStorageStats stats;
  ASSERT_EQ(MACE_STORAGE_OK, lenient.storage().Stats(&stats));
  EXPECT_EQ(1u, stats.flush_failures);
  ASSERT_NE(nullptr, lenient.Find("k"));
  // The change is kept and written once the directory exists.
  ASSERT_EQ(0, mkdir(dir.Path("missing").c_str(), 0700));
  EXPECT_EQ(0, lenient.Flush());
  EXPECT_EQ(0, strict.Flush());
  EXPECT_TRUE(test::StockRead11(test::ReadFile(dir.Path("missing/cache.bin"))).loads);
}

TEST(KVStorageAdapter, UnreadablePathFailsLoad) {
  test::TempDir dir;
  ASSERT_TRUE(test::WriteFile(dir.Path("file"), B("x")));
  mace_storage::KVStorageAdapter cache(dir.Path("file/cache.bin"));
  EXPECT_EQ(-1, cache.Load());
  EXPECT_EQ(nullptr, cache.Find("k"));
  EXPECT_FALSE(cache.Insert("k", B("v")));
  EXPECT_FALSE(cache.Clear());
}

TEST(KVStorageAdapter, ThreadsFindInsertFlush) {
  test::TempDir dir;
  ASSERT_TRUE(test::CopyGolden("mace-1.1-cache.bin", dir.Path("cache.bin")));
  mace_storage::KVStorageAdapter cache(dir.Path("cache.bin"));
  ASSERT_EQ(0, cache.Load());
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.push_back(std::thread([&cache, &failures, t] {
      for (int i = 0; i < 30; ++i) {
        std::string key = "k" + std::to_string(t) + "-" + std::to_string(i);
        if (!cache.Insert(key, B(key))) ++failures[t];
        const std::vector<unsigned char> *v = cache.Find(key);
        if (v == nullptr || *v != B(key)) ++failures[t];
        v = cache.Find(kPlatformKey);
        if (v == nullptr || v->size() != 162u) ++failures[t];
        if (i % 10 == 0 && cache.Flush() != 0) ++failures[t];
      }
    }));
  }
  for (size_t t = 0; t < threads.size(); ++t) threads[t].join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(0, failures[t]);
  EXPECT_EQ(0, cache.Flush());
  test::StockView view = test::StockRead11(test::ReadFile(dir.Path("cache.bin")));
  ASSERT_TRUE(view.loads) << view.why;
  EXPECT_EQ(11u + 4 * 30, view.entries.size());
}

}  // namespace
