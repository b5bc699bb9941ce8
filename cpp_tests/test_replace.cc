// mace_storage_replace_kv_storage() on a stand-in for MACE's `core` library: the FileStorage that
// `core` provides is the drop-in (the stock stand-in aborts), and core's other sources remain.
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "mace/core/fake_runtime.h"
#include "mace/core/kv_storage.h"
#include "mace_storage_dropin.h"
#include "support/test_support.h"

namespace {

TEST(Replace, CoreKeepsItsOtherSources) { EXPECT_EQ(42, mace::FakeCoreMarker()); }

TEST(Replace, FileStorageFromCoreIsTheDropIn) {
  test::TempDir dir;
  ASSERT_TRUE(test::CopyGolden("mace-1.1-cache.bin", dir.Path("mace_cl_compiled_program.bin")));
  mace::FileStorageFactory factory(dir.path());
  std::shared_ptr<mace::KVStorage> cache = factory.CreateStorage("mace_cl_compiled_program.bin");
  ASSERT_EQ(0, cache->Load());
  ASSERT_NE(nullptr, cache->Find("mace_opencl_precompiled_platform_info_key"));
  EXPECT_TRUE(cache->Insert("new_program", test::B("binary")));
  EXPECT_EQ(0, cache->Flush());
  test::StockView view =
      test::StockRead11(test::ReadFile(dir.Path("mace_cl_compiled_program.bin")));
  ASSERT_TRUE(view.loads) << view.why;
  EXPECT_EQ(12u, view.entries.size());
  EXPECT_EQ(test::B("binary"), view.entries["new_program"]);
  EXPECT_EQ(0u, mace_storage_dropin_flush_failures());
}

}  // namespace
