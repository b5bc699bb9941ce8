// The C ABI of mace_storage.h: every function, NULL for every pointer, damaged and unwritable
// files, reports and counters, value lifetimes, the log callback, and concurrent use.
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mace_storage.h"
#include "support/test_support.h"

namespace {

using test::B;
using test::Bytes;

const char kPlatformKey[] = "mace_opencl_precompiled_platform_info_key";

const uint8_t *U(const char *s) { return reinterpret_cast<const uint8_t *>(s); }

MaceStorage *OpenOk(const std::string &path, const MaceStorageOptions *options = nullptr) {
  MaceStorage *s = nullptr;
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_open(path.c_str(), options, &s))
      << mace_storage_last_error(nullptr);
  return s;
}

MaceStorageStatus Put(MaceStorage *s, const std::string &key, const std::string &value) {
  return mace_storage_put(s, U(key.data()), key.size(), U(value.data()), value.size());
}

// The value of key, or "<status N>" when the get fails.
std::string Get(const MaceStorage *s, const std::string &key) {
  MaceStorageValue *v = nullptr;
  MaceStorageStatus st = mace_storage_get(s, U(key.data()), key.size(), &v);
  if (st != MACE_STORAGE_OK) return "<status " + std::to_string(st) + ">";
  size_t n = 0;
  const uint8_t *p = mace_storage_value_data(v, &n);
  std::string out(reinterpret_cast<const char *>(p), n);
  mace_storage_value_free(v);
  return out;
}

MaceStorageOpenReport ReportOf(const MaceStorage *s) {
  MaceStorageOpenReport r;
  memset(&r, 0xAB, sizeof r);
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_open_findings(s, &r));
  return r;
}

MaceStorageStats StatsOf(const MaceStorage *s) {
  MaceStorageStats st;
  memset(&st, 0xAB, sizeof st);
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_stats(s, &st));
  return st;
}

int32_t CountVisitor(const uint8_t *, size_t, const uint8_t *, size_t, void *user_data) {
  ++*static_cast<int *>(user_data);
  return 0;
}

int32_t StopVisitor(const uint8_t *, size_t, const uint8_t *, size_t, void *user_data) {
  ++*static_cast<int *>(user_data);
  return 1;
}

int32_t CollectKeys(const uint8_t *key, size_t key_len, const uint8_t *, size_t, void *user_data) {
  static_cast<std::vector<std::string> *>(user_data)->push_back(
      std::string(reinterpret_cast<const char *>(key), key_len));
  return 0;
}

TEST(CApi, VersionMatchesHeader) {
  ASSERT_NE(nullptr, mace_storage_version());
  EXPECT_STREQ(MACE_STORAGE_VERSION, mace_storage_version());
  EXPECT_EQ(std::to_string(MACE_STORAGE_VERSION_MAJOR) + "." +
                std::to_string(MACE_STORAGE_VERSION_MINOR) + "." +
                std::to_string(MACE_STORAGE_VERSION_PATCH),
            std::string(MACE_STORAGE_VERSION));
}

TEST(CApi, NullArgumentsAreInvalidNeverACrash) {
  test::TempDir dir;
  MaceStorage *s = OpenOk(dir.Path("cache.bin"));
  ASSERT_NE(nullptr, s);
  MaceStorage *out = reinterpret_cast<MaceStorage *>(1);
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_open(nullptr, nullptr, &out));
  EXPECT_EQ(nullptr, out);
  EXPECT_STRNE("", mace_storage_last_error(nullptr));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_storage_open(dir.Path("x").c_str(), nullptr, nullptr));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_open_bytes(nullptr, 5, &out));
  EXPECT_EQ(nullptr, out);
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_open_bytes(U("x"), 1, nullptr));

  MaceStorageValue *v = reinterpret_cast<MaceStorageValue *>(1);
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_get(nullptr, U("k"), 1, &v));
  EXPECT_EQ(nullptr, v);
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_get(s, nullptr, 1, &v));
  EXPECT_STRNE("", mace_storage_last_error(s));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_get(s, U("k"), 1, nullptr));

  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_put(nullptr, U("k"), 1, U("v"), 1));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_put(s, nullptr, 1, U("v"), 1));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_put(s, U("k"), 1, nullptr, 1));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_remove(nullptr, U("k"), 1));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_remove(s, nullptr, 1));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_clear(nullptr));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_flush(nullptr));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_record_uses(nullptr, nullptr));

  MaceStorageStats stats;
  MaceStorageOpenReport report;
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_stats(nullptr, &stats));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_stats(s, nullptr));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_open_findings(nullptr, &report));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_open_findings(s, nullptr));
  int n = 0;
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_for_each(nullptr, CountVisitor, &n));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_for_each(s, nullptr, &n));
  EXPECT_EQ(0, n);

  ASSERT_NE(nullptr, mace_storage_open_notes(nullptr));
  EXPECT_STREQ("", mace_storage_open_notes(nullptr));
  ASSERT_NE(nullptr, mace_storage_last_error(nullptr));
  size_t len = 99;
  EXPECT_EQ(nullptr, mace_storage_value_data(nullptr, &len));
  EXPECT_EQ(0u, len);
  EXPECT_EQ(nullptr, mace_storage_value_data(nullptr, nullptr));
  mace_storage_log(MACE_STORAGE_LOG_ERROR, nullptr);
  mace_storage_value_free(nullptr);
  mace_storage_close(nullptr);
  mace_storage_close(s);
}

TEST(CApi, ZeroLengthKeysAndValuesNeedNoPointer) {
  test::TempDir dir;
  MaceStorage *s = OpenOk(dir.Path("cache.bin"));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_put(s, U("k"), 1, nullptr, 0));
  EXPECT_EQ("", Get(s, "k"));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_put(s, nullptr, 0, U("v"), 1));
  EXPECT_EQ("v", Get(s, ""));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_remove(s, nullptr, 0));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  mace_storage_close(s);
  s = OpenOk(dir.Path("cache.bin"));
  EXPECT_EQ("", Get(s, "k"));
  EXPECT_EQ("<status 1>", Get(s, ""));
  mace_storage_close(s);
}

TEST(CApi, EmptyPathAndImpossibleLengthsSayWhatIsWrong) {
  MaceStorage *out = reinterpret_cast<MaceStorage *>(1);
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_open("", nullptr, &out));
  EXPECT_EQ(nullptr, out);
  EXPECT_NE(nullptr, strstr(mace_storage_last_error(nullptr), "path is empty"));

  test::TempDir dir;
  MaceStorage *s = OpenOk(dir.Path("cache.bin"));
  ASSERT_NE(nullptr, s);
  const size_t huge = static_cast<size_t>(-1);  // a negative length converted to size_t
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_put(s, U("k"), 1, U("v"), huge));
  EXPECT_NE(nullptr, strstr(mace_storage_last_error(s), "length of value"));
  EXPECT_EQ(nullptr, strstr(mace_storage_last_error(s), "NULL"));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_put(s, U("k"), huge, U("v"), 1));
  EXPECT_NE(nullptr, strstr(mace_storage_last_error(s), "length of key"));
  MaceStorageValue *v = nullptr;
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_get(s, U("k"), huge, &v));
  EXPECT_NE(nullptr, strstr(mace_storage_last_error(s), "length of key"));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_put(s, U("k"), 1, nullptr, 3));
  EXPECT_NE(nullptr, strstr(mace_storage_last_error(s), "value is NULL with a non-zero length"));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_put(s, U("k"), 1, U("v"), 1));
  mace_storage_close(s);
}

TEST(CApi, InvalidFormatOptionIsRejected) {
  test::TempDir dir;
  MaceStorageOptions options = MaceStorageOptions();
  options.format = MACE_STORAGE_FORMAT_EMPTY;
  MaceStorage *s = reinterpret_cast<MaceStorage *>(1);
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_storage_open(dir.Path("cache.bin").c_str(), &options, &s));
  EXPECT_EQ(nullptr, s);
  options.format = 99;
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_storage_open(dir.Path("cache.bin").c_str(), &options, &s));
  EXPECT_STRNE("", mace_storage_last_error(nullptr));
}

TEST(CApi, GetPutRemoveClearFlushRoundTrip) {
  test::TempDir dir;
  MaceStorage *s = OpenOk(dir.Path("cache.bin"));
  MaceStorageValue *v = reinterpret_cast<MaceStorageValue *>(1);
  EXPECT_EQ(MACE_STORAGE_NOT_FOUND, mace_storage_get(s, U("absent"), 6, &v));
  EXPECT_EQ(nullptr, v);
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, kPlatformKey, "Portable CL, FULL_PROFILE, OpenCL 3.0"));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "b", "2"));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "a", std::string("1\0x", 3)));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "b", "22"));
  EXPECT_EQ(std::string("1\0x", 3), Get(s, "a"));
  EXPECT_EQ("22", Get(s, "b"));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_remove(s, U("a"), 1));
  EXPECT_EQ(MACE_STORAGE_NOT_FOUND, mace_storage_remove(s, U("a"), 1));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  mace_storage_close(s);

  s = OpenOk(dir.Path("cache.bin"));
  EXPECT_EQ("<status 1>", Get(s, "a"));
  EXPECT_EQ("22", Get(s, "b"));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_clear(s));
  EXPECT_EQ("<status 1>", Get(s, "b"));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "c", "3"));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  mace_storage_close(s);

  s = OpenOk(dir.Path("cache.bin"));
  std::vector<std::string> keys;
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_for_each(s, CollectKeys, &keys));
  EXPECT_EQ(std::vector<std::string>(1, "c"), keys);
  mace_storage_close(s);
}

// A buffer for mace_storage_get_into: the vector given as ctx, one byte longer than the value
// (so that an empty one shows no buffer was asked for), holding it from its second byte.
uint8_t *ResizeInto(void *ctx, size_t len) {
  std::vector<uint8_t> *out = static_cast<std::vector<uint8_t> *>(ctx);
  out->assign(len + 1, 0xA5);
  return &(*out)[1];
}
// Counts its calls in the int ctx points to, and gives up.
uint8_t *GiveUp(void *ctx, size_t) {
  ++*static_cast<int *>(ctx);
  return nullptr;
}

// The value of key got into a buffer of the caller's, or "<status N>"; "<no buffer asked>" when
// the value was found with no buffer asked for.
std::string GetInto(const MaceStorage *s, const std::string &key) {
  std::vector<uint8_t> buf;
  MaceStorageStatus st = mace_storage_get_into(s, U(key.data()), key.size(), ResizeInto, &buf);
  if (st != MACE_STORAGE_OK) return "<status " + std::to_string(st) + ">";
  if (buf.empty()) return "<no buffer asked>";
  return std::string(buf.begin() + 1, buf.end());
}

TEST(CApi, GetIntoFillsTheCallersBufferAndVerifiesLazyValuesThere) {
  test::TempDir dir;
  const std::string path = dir.Path("cache.bin");
  const std::string big(5000, 'q');
  MaceStorage *s = OpenOk(path);
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, kPlatformKey, "Portable CL, FULL_PROFILE, OpenCL 3.0"));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "good", "intact value"));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "bad", big));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "empty", ""));
  EXPECT_EQ("intact value", GetInto(s, "good"));  // pending: copied
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  mace_storage_close(s);
  // Damage the big value on disk: a lazy open only finds it when the value is read.
  Bytes file = test::ReadFile(path);
  std::string text(file.begin(), file.end());
  size_t at = text.find(big);
  ASSERT_NE(std::string::npos, at);
  file[at + 100] ^= 0x20;
  ASSERT_TRUE(test::WriteFile(path, file));

  MaceStorageOptions options = MaceStorageOptions();
  options.verify = MACE_STORAGE_VERIFY_LAZY;
  s = OpenOk(path, &options);
  EXPECT_EQ(1, ReportOf(s).intact);
  EXPECT_EQ("intact value", GetInto(s, "good"));
  EXPECT_EQ("", GetInto(s, "empty"));
  EXPECT_EQ("<status 1>", GetInto(s, "bad"));
  EXPECT_EQ("<status 1>", GetInto(s, "absent"));
  MaceStorageStats st = StatsOf(s);
  EXPECT_EQ(1u, st.entries_dropped);
  EXPECT_EQ(2u, st.hits);
  EXPECT_EQ(2u, st.misses);
  EXPECT_EQ("<status 1>", Get(s, "bad"));
  int gave_up = 0;
  EXPECT_EQ(MACE_STORAGE_NOT_FOUND, mace_storage_get_into(s, U("good"), 4, GiveUp, &gave_up));
  EXPECT_EQ(1, gave_up);
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_storage_get_into(s, U("good"), 4, nullptr, nullptr));
  EXPECT_NE(nullptr, strstr(mace_storage_last_error(s), "alloc is NULL"));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_storage_get_into(s, nullptr, 4, ResizeInto, nullptr));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_storage_get_into(nullptr, U("good"), 4, ResizeInto, nullptr));

  // Not cached by the store: the file changed under it is read again by the next call.
  file = test::ReadFile(path);
  text.assign(file.begin(), file.end());
  at = text.find("intact value");
  ASSERT_NE(std::string::npos, at);
  file[at] ^= 0x01;
  FILE *f = fopen(path.c_str(), "r+b");
  ASSERT_NE(nullptr, f);
  ASSERT_EQ(0, fseek(f, static_cast<long>(at), SEEK_SET));
  ASSERT_EQ(1u, fwrite(&file[at], 1, 1, f));
  ASSERT_EQ(0, fclose(f));
  EXPECT_EQ("<status 1>", GetInto(s, "good"));
  EXPECT_EQ(2u, StatsOf(s).entries_dropped);
  mace_storage_close(s);
}

TEST(CApi, CloseDiscardsUnflushedChanges) {
  test::TempDir dir;
  MaceStorage *s = OpenOk(dir.Path("cache.bin"));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "k", "v"));
  mace_storage_close(s);
  EXPECT_FALSE(test::Exists(dir.Path("cache.bin")));
  s = OpenOk(dir.Path("cache.bin"));
  EXPECT_EQ("<status 1>", Get(s, "k"));
  mace_storage_close(s);
}

TEST(CApi, ForEachVisitsInKeyOrderAndStops) {
  test::TempDir dir;
  MaceStorage *s = OpenOk(dir.Path("cache.bin"));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "zeta", "1"));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "alpha", "2"));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "mid", "3"));
  std::vector<std::string> keys;
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_for_each(s, CollectKeys, &keys));
  const char *want[] = {"alpha", "mid", "zeta"};
  EXPECT_EQ(std::vector<std::string>(want, want + 3), keys);
  int visits = 0;
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_for_each(s, StopVisitor, &visits));
  EXPECT_EQ(1, visits);
  mace_storage_close(s);
}

int32_t CollectKeyOnly(const uint8_t *key, size_t key_len, void *user_data) {
  static_cast<std::vector<std::string> *>(user_data)->push_back(
      std::string(reinterpret_cast<const char *>(key), key_len));
  return 0;
}

int32_t StopKeyVisitor(const uint8_t *, size_t, void *user_data) {
  ++*static_cast<int *>(user_data);
  return 1;
}

TEST(CApi, ForEachKeyVisitsTheKeysInOrderWithoutReadingValues) {
  test::TempDir dir;
  MaceStorage *s = OpenOk(dir.Path("cache.bin"));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "zeta", "1"));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "alpha", "2"));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "mid", "3"));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  mace_storage_close(s);

  s = OpenOk(dir.Path("cache.bin"));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "beta", "4"));  // not flushed yet: listed all the same
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_remove(s, U("mid"), 3));
  std::vector<std::string> keys;
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_for_each_key(s, CollectKeyOnly, &keys));
  const char *want[] = {"alpha", "beta", "zeta"};
  EXPECT_EQ(std::vector<std::string>(want, want + 3), keys);
  // The same keys mace_storage_for_each visits.
  std::vector<std::string> with_values;
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_for_each(s, CollectKeys, &with_values));
  EXPECT_EQ(with_values, keys);
  int visits = 0;
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_for_each_key(s, StopKeyVisitor, &visits));
  EXPECT_EQ(1, visits);
  MaceStorageStats stats = StatsOf(s);
  EXPECT_EQ(0u, stats.hits + stats.misses);  // no value was got
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_storage_for_each_key(s, nullptr, &visits));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_storage_for_each_key(nullptr, CollectKeyOnly, &keys));
  EXPECT_EQ(1, visits);
  mace_storage_clear(s);
  keys.clear();
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_for_each_key(s, CollectKeyOnly, &keys));
  EXPECT_TRUE(keys.empty());
  mace_storage_close(s);
}

TEST(CApi, GoldenFileReportNotesAndStats) {
  test::TempDir dir;
  const std::string path = dir.Path("mace_cl_compiled_program.bin");
  ASSERT_TRUE(test::CopyGolden("mace-1.1-cache.bin", path));
  std::vector<test::ManifestEntry> manifest = test::Manifest("mace-1.1-cache.bin");
  ASSERT_EQ(11u, manifest.size());
  MaceStorage *s = OpenOk(path);
  MaceStorageOpenReport r = ReportOf(s);
  EXPECT_EQ(0, r.missing);
  EXPECT_EQ(1, r.intact);
  EXPECT_EQ(MACE_STORAGE_FORMAT_MACE_1_1, r.format);
  EXPECT_EQ(0, r.set_aside);
  EXPECT_EQ(test::ReadFile(path).size(), r.file_len);
  EXPECT_EQ(manifest.size(), r.entries);
  EXPECT_EQ(0u, r.entries_dropped);
  EXPECT_STREQ("", mace_storage_open_notes(s));

  uint64_t bytes = 0;
  for (size_t i = 0; i < manifest.size(); ++i) {
    bytes += manifest[i].key.size() + manifest[i].value_len;
    MaceStorageValue *v = nullptr;
    ASSERT_EQ(MACE_STORAGE_OK,
              mace_storage_get(s, U(manifest[i].key.data()), manifest[i].key.size(), &v));
    size_t n = 0;
    const uint8_t *p = mace_storage_value_data(v, &n);
    EXPECT_EQ(manifest[i].value_len, n);
    EXPECT_EQ(manifest[i].value_crc, test::Crc32(p, n));
    EXPECT_EQ(p, mace_storage_value_data(v, nullptr));
    mace_storage_value_free(v);
  }
  EXPECT_EQ("<status 1>", Get(s, "absent"));
  EXPECT_EQ("<status 1>", Get(s, "also absent"));

  MaceStorageStats st = StatsOf(s);
  EXPECT_EQ(manifest.size(), st.entries);
  EXPECT_EQ(bytes, st.bytes);
  EXPECT_EQ(manifest.size(), st.hits);
  EXPECT_EQ(2u, st.misses);
  EXPECT_EQ(0u, st.entries_salvaged);
  EXPECT_EQ(0u, st.entries_dropped);
  EXPECT_EQ(0u, st.flushes);
  EXPECT_EQ(0u, st.flush_failures);

  // Nothing changed: no write at all.
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  EXPECT_EQ(0u, StatsOf(s).flushes);
  // A stock file is rewritten whole in the checked format, then new keys are appended.
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "new program", "binary"));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "newer program", "binary 2"));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  st = StatsOf(s);
  EXPECT_EQ(2u, st.flushes);
  EXPECT_EQ(1u, st.rewrites);
  EXPECT_EQ(1u, st.appends);
  EXPECT_EQ(0u, st.flush_failures);
  EXPECT_GT(st.bytes_written, test::ReadFile(test::GoldenPath("mace-1.1-cache.bin")).size());
  EXPECT_EQ(1, st.process_lock);
  EXPECT_EQ(manifest.size() + 2, st.entries);
  mace_storage_close(s);

  s = OpenOk(path);
  r = ReportOf(s);
  EXPECT_EQ(1, r.intact);
  EXPECT_EQ(MACE_STORAGE_FORMAT_CHECKED_1_1, r.format);
  EXPECT_EQ(manifest.size() + 2, r.entries);
  EXPECT_EQ("binary 2", Get(s, "newer program"));
  mace_storage_close(s);
}

TEST(CApi, EveryWritableFormatRoundTrips) {
  const MaceStorageFormat formats[] = {MACE_STORAGE_FORMAT_MACE_1_0, MACE_STORAGE_FORMAT_MACE_1_1,
                                       MACE_STORAGE_FORMAT_CHECKED_1_0,
                                       MACE_STORAGE_FORMAT_CHECKED_1_1};
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(formats[i]);
    test::TempDir dir;
    MaceStorageOptions options = MaceStorageOptions();
    options.format = formats[i];
    MaceStorage *s = OpenOk(dir.Path("cache.bin"), &options);
    EXPECT_EQ(MACE_STORAGE_OK, Put(s, kPlatformKey, "platform"));
    EXPECT_EQ(MACE_STORAGE_OK, Put(s, "program", "binary"));
    EXPECT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
    mace_storage_close(s);
    s = OpenOk(dir.Path("cache.bin"));
    EXPECT_EQ(formats[i], ReportOf(s).format);
    EXPECT_EQ(1, ReportOf(s).intact);
    EXPECT_EQ("binary", Get(s, "program"));
    mace_storage_close(s);
    Bytes file = test::ReadFile(dir.Path("cache.bin"));
    test::StockView view = formats[i] == MACE_STORAGE_FORMAT_MACE_1_0 ||
                                   formats[i] == MACE_STORAGE_FORMAT_CHECKED_1_0
                               ? test::StockRead10(file)
                               : test::StockRead11(file);
    EXPECT_TRUE(view.loads) << view.why;
    EXPECT_EQ(2u, view.entries.size());
    EXPECT_EQ(B("binary"), view.entries["program"]);
  }
}

TEST(CApi, ValuesOutliveOverwriteClearAndClose) {
  test::TempDir dir;
  MaceStorage *s = OpenOk(dir.Path("cache.bin"));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "k", "first value"));
  MaceStorageValue *v = nullptr;
  ASSERT_EQ(MACE_STORAGE_OK, mace_storage_get(s, U("k"), 1, &v));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "k", "second value, longer than the first"));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_clear(s));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "k", "third"));
  mace_storage_close(s);
  size_t n = 0;
  const uint8_t *p = mace_storage_value_data(v, &n);
  EXPECT_EQ("first value", std::string(reinterpret_cast<const char *>(p), n));
  mace_storage_value_free(v);
}

TEST(CApi, OpenBytesReadsGoldenAndRejectsGarbage) {
  Bytes golden = test::ReadFile(test::GoldenPath("mace-1.0-cache.bin"));
  ASSERT_FALSE(golden.empty());
  MaceStorage *s = nullptr;
  ASSERT_EQ(MACE_STORAGE_OK, mace_storage_open_bytes(&golden[0], golden.size(), &s));
  EXPECT_EQ(MACE_STORAGE_FORMAT_MACE_1_0, ReportOf(s).format);
  EXPECT_EQ(11u, StatsOf(s).entries);
  EXPECT_EQ(162u, Get(s, kPlatformKey).size());
  EXPECT_EQ(MACE_STORAGE_READ_ONLY, Put(s, "k", "v"));
  EXPECT_EQ(MACE_STORAGE_READ_ONLY, mace_storage_remove(s, U(kPlatformKey), strlen(kPlatformKey)));
  EXPECT_EQ(MACE_STORAGE_READ_ONLY, mace_storage_clear(s));
  EXPECT_EQ(MACE_STORAGE_READ_ONLY, mace_storage_flush(s));
  EXPECT_STRNE("", mace_storage_last_error(s));
  mace_storage_close(s);

  Bytes garbage = B("this is not a cache file, not at all....");
  s = reinterpret_cast<MaceStorage *>(1);
  EXPECT_EQ(MACE_STORAGE_CORRUPT, mace_storage_open_bytes(&garbage[0], garbage.size(), &s));
  EXPECT_EQ(nullptr, s);
  EXPECT_STRNE("", mace_storage_last_error(nullptr));
}

TEST(CApi, ZeroByteFileOpensEmpty) {
  test::TempDir dir;
  ASSERT_TRUE(test::WriteFile(dir.Path("cache.bin"), Bytes()));
  MaceStorage *s = OpenOk(dir.Path("cache.bin"));
  MaceStorageOpenReport r = ReportOf(s);
  EXPECT_EQ(0, r.missing);
  EXPECT_EQ(MACE_STORAGE_FORMAT_EMPTY, r.format);
  EXPECT_EQ(0u, r.entries);
  EXPECT_EQ(0u, StatsOf(s).entries);
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "k", "v"));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  mace_storage_close(s);
  s = OpenOk(dir.Path("cache.bin"));
  EXPECT_EQ("v", Get(s, "k"));
  mace_storage_close(s);
}

TEST(CApi, GarbageFileIsSetAsideWithAWarning) {
  test::TempDir dir;
  const std::string path = dir.Path("cache.bin");
  Bytes garbage;
  for (int i = 0; i < 5000; ++i) garbage.push_back(static_cast<unsigned char>(i * 7919 >> 3));
  ASSERT_TRUE(test::WriteFile(path, garbage));
  test::LogCapture log;
  MaceStorage *s = OpenOk(path);
  MaceStorageOpenReport r = ReportOf(s);
  EXPECT_EQ(0, r.intact);
  EXPECT_EQ(1, r.set_aside);
  EXPECT_EQ(0u, r.entries);
  EXPECT_EQ(garbage.size(), r.file_len);
  EXPECT_STRNE("", mace_storage_open_notes(s));
  EXPECT_GE(log.Count(MACE_STORAGE_LOG_WARNING), 1) << log.All();
  EXPECT_EQ(garbage, test::ReadFile(path + ".corrupt"));
  EXPECT_FALSE(test::Exists(path));
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "k", "v"));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  mace_storage_close(s);
  s = OpenOk(path);
  EXPECT_EQ(1, ReportOf(s).intact);
  EXPECT_EQ("v", Get(s, "k"));
  mace_storage_close(s);
}

TEST(CApi, ReadOnlyOpenNeverWritesNorMovesAside) {
  test::TempDir dir;
  const std::string path = dir.Path("cache.bin");
  ASSERT_TRUE(test::WriteFile(path, B("garbage garbage garbage garbage")));
  MaceStorageOptions options = MaceStorageOptions();
  options.read_only = 1;
  MaceStorage *s = OpenOk(path, &options);
  EXPECT_EQ(0, ReportOf(s).set_aside);
  EXPECT_TRUE(test::Exists(path));
  EXPECT_EQ(MACE_STORAGE_READ_ONLY, Put(s, "k", "v"));
  EXPECT_EQ(MACE_STORAGE_READ_ONLY, mace_storage_flush(s));
  mace_storage_close(s);
  EXPECT_EQ(B("garbage garbage garbage garbage"), test::ReadFile(path));
}

TEST(CApi, TruncatedGolden11KeepsNothingTruncatedGolden10KeepsCompletePairs) {
  test::TempDir dir;
  Bytes g11 = test::ReadFile(test::GoldenPath("mace-1.1-cache.bin"));
  ASSERT_GT(g11.size(), 100u);
  g11.resize(g11.size() / 2);
  ASSERT_TRUE(test::WriteFile(dir.Path("a.bin"), g11));
  test::LogCapture log;
  MaceStorage *s = OpenOk(dir.Path("a.bin"));
  EXPECT_EQ(0, ReportOf(s).intact);
  EXPECT_EQ(0u, StatsOf(s).entries);
  EXPECT_EQ("<status 1>", Get(s, kPlatformKey));
  mace_storage_close(s);
  EXPECT_GE(log.Count(MACE_STORAGE_LOG_WARNING), 1) << log.All();

  // Cut inside the last pair: the ten complete pairs (platform info among them) are kept.
  Bytes g10 = test::ReadFile(test::GoldenPath("mace-1.0-cache.bin"));
  ASSERT_GT(g10.size(), 100u);
  g10.resize(g10.size() - 10);
  ASSERT_TRUE(test::WriteFile(dir.Path("b.bin"), g10));
  s = OpenOk(dir.Path("b.bin"));
  MaceStorageOpenReport r = ReportOf(s);
  EXPECT_EQ(0, r.intact);
  EXPECT_EQ(MACE_STORAGE_FORMAT_MACE_1_0, r.format);
  EXPECT_EQ(10u, r.entries);
  EXPECT_GE(r.entries_dropped, 1u);
  EXPECT_STRNE("", mace_storage_open_notes(s));
  EXPECT_EQ(10u, StatsOf(s).entries_salvaged);
  EXPECT_EQ(162u, Get(s, kPlatformKey).size());
  mace_storage_close(s);
}

TEST(CApi, FlushIntoMissingDirectoryIsAnIoErrorAndRetries) {
  test::TempDir dir;
  const std::string path = dir.Path("no/such/dir/cache.bin");
  MaceStorage *s = OpenOk(path);
  EXPECT_EQ(1, ReportOf(s).missing);
  EXPECT_EQ(MACE_STORAGE_OK, Put(s, "k", "v"));
  EXPECT_EQ(MACE_STORAGE_IO_ERROR, mace_storage_flush(s));
  EXPECT_STRNE("", mace_storage_last_error(s));
  EXPECT_EQ(1u, StatsOf(s).flush_failures);
  EXPECT_EQ("v", Get(s, "k"));
  // The change stayed in memory: once the directory exists, the next flush writes it.
  ASSERT_EQ(0, mkdir(dir.Path("no").c_str(), 0700));
  ASSERT_EQ(0, mkdir(dir.Path("no/such").c_str(), 0700));
  ASSERT_EQ(0, mkdir(dir.Path("no/such/dir").c_str(), 0700));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  mace_storage_close(s);
  s = OpenOk(path);
  EXPECT_EQ("v", Get(s, "k"));
  mace_storage_close(s);
}

TEST(CApi, PathUnderARegularFileIsAnIoError) {
  test::TempDir dir;
  ASSERT_TRUE(test::WriteFile(dir.Path("file"), B("x")));
  MaceStorage *s = reinterpret_cast<MaceStorage *>(1);
  EXPECT_EQ(MACE_STORAGE_IO_ERROR, mace_storage_open(dir.Path("file/cache.bin").c_str(), nullptr, &s));
  EXPECT_EQ(nullptr, s);
  EXPECT_STRNE("", mace_storage_last_error(nullptr));
}

TEST(CApi, LogCallbackGetsInfoOnFirstStartWarningOnDamage) {
  test::TempDir dir;
  {
    test::LogCapture log;
    MaceStorage *s = OpenOk(dir.Path("cache.bin"));
    mace_storage_close(s);
    EXPECT_EQ(1, log.Count(MACE_STORAGE_LOG_INFO, dir.Path("cache.bin"))) << log.All();
    EXPECT_EQ(0, log.Count(MACE_STORAGE_LOG_WARNING)) << log.All();
    mace_storage_log(MACE_STORAGE_LOG_ERROR, "a message from C");
    EXPECT_EQ(1, log.Count(MACE_STORAGE_LOG_ERROR, "a message from C"));
  }
  Bytes cut = test::ReadFile(test::GoldenPath("mace-1.0-cache.bin"));
  cut.resize(cut.size() - 10);
  ASSERT_TRUE(test::WriteFile(dir.Path("cut.bin"), cut));
  {
    test::LogCapture log;
    MaceStorage *s = OpenOk(dir.Path("cut.bin"));
    mace_storage_close(s);
    EXPECT_EQ(1, log.Count(MACE_STORAGE_LOG_WARNING, dir.Path("cut.bin"))) << log.All();
  }
}

TEST(CApi, LogCallbackHonoursMinimumLevel) {
  test::LogCapture log;
  mace_storage_set_log_callback(nullptr, nullptr, MACE_STORAGE_LOG_ERROR);
  mace_storage_log(MACE_STORAGE_LOG_WARNING, "to stderr, never to the capture");
  EXPECT_EQ(0, log.Count(MACE_STORAGE_LOG_WARNING));
}

TEST(CApi, ThreadsGetPutAndFlushTogether) {
  test::TempDir dir;
  const std::string path = dir.Path("cache.bin");
  MaceStorage *s = OpenOk(path);
  ASSERT_EQ(MACE_STORAGE_OK, Put(s, kPlatformKey, "platform"));
  const int kThreads = 4, kKeys = 50;
  // Per thread: failed puts, gets of its own key, gets of the key put before, flushes.
  std::vector<std::vector<int>> failures(kThreads, std::vector<int>(4, 0));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.push_back(std::thread([s, t, &failures] {
      for (int i = 0; i < kKeys; ++i) {
        std::string key = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (Put(s, key, key + " value") != MACE_STORAGE_OK) ++failures[t][0];
        if (Get(s, key) != key + " value") ++failures[t][1];
        if (Get(s, kPlatformKey) != "platform") ++failures[t][2];
        if (i % 10 == t && mace_storage_flush(s) != MACE_STORAGE_OK) ++failures[t][3];
      }
    }));
  }
  for (size_t t = 0; t < threads.size(); ++t) threads[t].join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(std::vector<int>(4, 0), failures[t])
        << "thread " << t << ": failed puts, own-key gets, earlier-key gets, flushes";
  }
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  EXPECT_EQ(0u, StatsOf(s).flush_failures);
  mace_storage_close(s);

  s = OpenOk(path);
  EXPECT_EQ(1, ReportOf(s).intact);
  EXPECT_EQ(static_cast<uint64_t>(kThreads * kKeys + 1), StatsOf(s).entries);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kKeys; ++i) {
      std::string key = "t" + std::to_string(t) + "-" + std::to_string(i);
      EXPECT_EQ(key + " value", Get(s, key));
    }
  }
  mace_storage_close(s);
  test::StockView view = test::StockRead11(test::ReadFile(path));
  EXPECT_TRUE(view.loads) << view.why;
  EXPECT_EQ(0, view.duplicates);
  EXPECT_EQ(static_cast<size_t>(kThreads * kKeys + 1), view.entries.size());
}

// A get that runs while another thread flushes must see every change made before the flush
// began (the store promises its handle is safe to use from many threads at once).
TEST(CApi, GetDuringFlushSeesTheChangesBeingWritten) {
  test::TempDir dir;
  MaceStorage *s = OpenOk(dir.Path("cache.bin"));
  ASSERT_EQ(MACE_STORAGE_OK, Put(s, kPlatformKey, "platform"));
  std::atomic<bool> done(false);
  std::thread flusher([s, &done] {
    for (int i = 0; i < 20; ++i) {
      std::string big(1 << 20, static_cast<char>('a' + i));
      Put(s, "big", big);
      mace_storage_flush(s);
    }
    done = true;
  });
  int gets = 0, misses = 0;
  while (!done) {
    ++gets;
    if (Get(s, kPlatformKey) != "platform") ++misses;
  }
  flusher.join();
  EXPECT_EQ(0, misses) << "of " << gets << " gets of a key put before the flushes";
  mace_storage_close(s);
}

// A process that only gets records its uses when asked, once the file is past half its budget.
TEST(CApi, RecordUsesWritesOnlyPastHalfTheBudget) {
  test::TempDir dir;
  const std::string path = dir.Path("cache.bin");
  MaceStorageOptions options = MaceStorageOptions();
  options.budget_mib = 1;
  MaceStorage *s = OpenOk(path, &options);
  ASSERT_NE(nullptr, s);
  ASSERT_EQ(MACE_STORAGE_OK, Put(s, "small", "x"));
  ASSERT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  int32_t wrote = -1;
  EXPECT_EQ("x", Get(s, "small"));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_record_uses(s, &wrote));
  EXPECT_EQ(0, wrote) << "a file below half its budget holds no use record";
  ASSERT_EQ(MACE_STORAGE_OK, Put(s, "big", std::string(700 * 1024, 'b')));
  ASSERT_EQ(MACE_STORAGE_OK, mace_storage_flush(s));
  mace_storage_close(s);
  s = OpenOk(path, &options);
  ASSERT_NE(nullptr, s);
  EXPECT_EQ("x", Get(s, "small"));
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_record_uses(s, &wrote));
  EXPECT_EQ(1, wrote);
  EXPECT_EQ(MACE_STORAGE_OK, mace_storage_record_uses(s, nullptr));
  mace_storage_close(s);
}

}  // namespace
