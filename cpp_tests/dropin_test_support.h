// What the drop-in's tests share (test_dropin.cc, test_dropin_flush.cc): the build's MACE version
// and flush policy, the names MACE uses, and a cache made and read the way MACE makes and reads it.
// Compiled once per drop-in build (MACE_STORAGE_MACE_1_0, MACE_STORAGE_STRICT_FLUSH).
#ifndef MACE_STORAGE_DROPIN_TEST_SUPPORT_H_
#define MACE_STORAGE_DROPIN_TEST_SUPPORT_H_

#include <stdint.h>

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "mace/core/kv_storage.h"
#include "mace_storage.h"
#include "support/test_support.h"

namespace dropin_test {

using test::B;
using test::Bytes;
using test::Entries;

#ifdef MACE_STORAGE_MACE_1_0
const char kGolden[] = "mace-1.0-cache.bin";
const int32_t kWrittenFormat = MACE_STORAGE_FORMAT_CHECKED_1_0;
inline test::StockView Stock(const Bytes &file) { return test::StockRead10(file); }
#else
const char kGolden[] = "mace-1.1-cache.bin";
const int32_t kWrittenFormat = MACE_STORAGE_FORMAT_CHECKED_1_1;
inline test::StockView Stock(const Bytes &file) { return test::StockRead11(file); }
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
inline std::shared_ptr<mace::KVStorage> CacheIn(const test::TempDir &dir) {
  mace::FileStorageFactory factory(dir.path());
  return factory.CreateStorage(kCacheName);
}

// The golden file's entries, as the stock reader of this MACE version sees them.
inline Entries GoldenEntries() { return Stock(test::ReadFile(test::GoldenPath(kGolden))).entries; }

// The entries the stock MACE of this version would load from path; a failure if it would not.
inline Entries StockEntries(const std::string &path) {
  test::StockView view = Stock(test::ReadFile(path));
  EXPECT_TRUE(view.loads) << path << ": " << view.why;
  EXPECT_EQ(0, view.duplicates) << path;
  return view.entries;
}

// The format the library detects in the file at path.
inline int32_t FormatOf(const std::string &path) {
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
inline Entries FoundEntries(mace::KVStorage *cache, const Entries &candidates) {
  Entries found;
  for (Entries::const_iterator it = candidates.begin(); it != candidates.end(); ++it) {
    const std::vector<unsigned char> *v = cache->Find(it->first);
    if (v == nullptr) continue;
    EXPECT_EQ(it->second, *v) << "a value that is not the one written: " << it->first;
    found[it->first] = *v;
  }
  return found;
}

// A cache with the golden file's entries, in dir.
inline void PutGolden(const test::TempDir &dir) {
  test::WriteFile(dir.path() + "/" + kCacheName, test::ReadFile(test::GoldenPath(kGolden)));
}

}  // namespace dropin_test

#endif  // MACE_STORAGE_DROPIN_TEST_SUPPORT_H_
