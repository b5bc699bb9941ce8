// The OpenCL program cache of the C ABI (mace_program_cache_*): NULL for every pointer, reset, and,
// when an OpenCL platform is present (PoCL in CI), a build from source then from the cached binary.
#include <dlfcn.h>
#include <string.h>

#include <string>
#include <vector>

#define CL_TARGET_OPENCL_VERSION 120
#include "CL/cl.h"
#include "gtest/gtest.h"
#include "mace_storage.h"
#include "support/test_support.h"

namespace {

void *const kBogus = reinterpret_cast<void *>(16);  // never dereferenced: the call fails first

MaceProgramCache *OpenCache(const std::string &path) {
  MaceProgramCache *c = nullptr;
  EXPECT_EQ(MACE_STORAGE_OK, mace_program_cache_open(path.c_str(), nullptr, &c))
      << mace_storage_last_error(nullptr);
  return c;
}

TEST(ProgramCacheApi, NullArgumentsAreInvalidNeverACrash) {
  test::TempDir dir;
  const std::string path = dir.Path("cache.bin");
  MaceProgramCache *out = reinterpret_cast<MaceProgramCache *>(1);
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_program_cache_open(nullptr, nullptr, &out));
  EXPECT_EQ(nullptr, out);
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_program_cache_open(path.c_str(), nullptr, nullptr));
  MaceProgramCacheOptions options = MaceProgramCacheOptions();
  options.reuse_policy = 2;
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_program_cache_open(path.c_str(), &options, &out));
  EXPECT_STRNE("", mace_storage_last_error(nullptr));

  MaceProgramCache *c = OpenCache(path);
  ASSERT_NE(nullptr, c);
  const char src[] = "kernel void k() {}";
  void *program = kBogus;
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_build(nullptr, kBogus, kBogus, "k", src, sizeof src, "", &program));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_build(c, nullptr, kBogus, "k", src, sizeof src, "", &program));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_build(c, kBogus, nullptr, "k", src, sizeof src, "", &program));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_build(c, kBogus, kBogus, "k", src, sizeof src, "", nullptr));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_build(c, kBogus, kBogus, nullptr, src, sizeof src, "", &program));
  EXPECT_EQ(nullptr, program);
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_build(c, kBogus, kBogus, "k", nullptr, 5, "", &program));
  const uint8_t bin[] = {1, 2, 3};
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_put_binary(nullptr, kBogus, "k", src, sizeof src, "", bin, 3));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_put_binary(c, nullptr, "k", src, sizeof src, "", bin, 3));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_put_binary(c, kBogus, nullptr, src, sizeof src, "", bin, 3));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_put_binary(c, kBogus, "k", nullptr, 5, "", bin, 3));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_put_binary(c, kBogus, "k", src, sizeof src, "", nullptr, 3));
  MaceStorageValue *v = reinterpret_cast<MaceStorageValue *>(1);
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_get_binary(nullptr, kBogus, "k", src, sizeof src, "", &v));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_get_binary(c, nullptr, "k", src, sizeof src, "", &v));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_get_binary(c, kBogus, "k", src, sizeof src, "", nullptr));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT,
            mace_program_cache_get_binary(c, kBogus, nullptr, src, sizeof src, "", &v));
  MaceProgramCacheStats stats;
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_program_cache_stats(nullptr, &stats));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_program_cache_stats(c, nullptr));
  EXPECT_EQ(MACE_STORAGE_INVALID_ARGUMENT, mace_program_cache_reset(nullptr));
  mace_program_cache_mark_healthy(nullptr);
  mace_program_cache_close(nullptr);
  mace_program_cache_close(c);
}

TEST(ProgramCacheApi, OpenStatsMarkHealthyClose) {
  test::TempDir dir;
  MaceProgramCacheOptions options = MaceProgramCacheOptions();
  options.os_build_id = "test-os/1";
  options.app_version = "1.0";
  options.reuse_policy = 1;
  MaceProgramCache *c = nullptr;
  ASSERT_EQ(MACE_STORAGE_OK,
            mace_program_cache_open(dir.Path("cache.bin").c_str(), &options, &c));
  MaceProgramCacheStats stats;
  memset(&stats, 0xAB, sizeof stats);
  ASSERT_EQ(MACE_STORAGE_OK, mace_program_cache_stats(c, &stats));
  EXPECT_EQ(0u, stats.hits);
  EXPECT_EQ(0u, stats.misses);
  EXPECT_EQ(0u, stats.rejected);
  EXPECT_EQ(0u, stats.crash_loop_evictions);
  EXPECT_EQ(0u, stats.cache_set_aside);
  mace_program_cache_mark_healthy(c);
  mace_program_cache_close(c);
}

TEST(ProgramCacheApi, ResetSetsTheFileAside) {
  test::TempDir dir;
  const std::string path = dir.Path("cache.bin");
  EXPECT_EQ(MACE_STORAGE_OK, mace_program_cache_reset(path.c_str()));  // missing: fine
  ASSERT_TRUE(test::CopyGolden("mace-1.1-cache.bin", path));
  test::LogCapture log;
  EXPECT_EQ(MACE_STORAGE_OK, mace_program_cache_reset(path.c_str()));
  EXPECT_FALSE(test::Exists(path));
  EXPECT_EQ(test::ReadFile(test::GoldenPath("mace-1.1-cache.bin")),
            test::ReadFile(path + ".crashloop"));
  EXPECT_EQ(1, log.Count(MACE_STORAGE_LOG_WARNING, path)) << log.All();
}

// The OpenCL entry points the test needs, from the library the cache loads too.
struct OpenCl {
  void *lib = nullptr;
  decltype(&clGetPlatformIDs) GetPlatformIDs = nullptr;
  decltype(&clGetDeviceIDs) GetDeviceIDs = nullptr;
  decltype(&clCreateContext) CreateContext = nullptr;
  decltype(&clReleaseContext) ReleaseContext = nullptr;
  decltype(&clReleaseProgram) ReleaseProgram = nullptr;
  cl_context context = nullptr;
  cl_device_id device = nullptr;

  // Loads OpenCL and makes a context on the first device; false (and why) if there is none.
  bool Init(std::string *why) {
    lib = dlopen("libOpenCL.so", RTLD_NOW);
    if (lib == nullptr) lib = dlopen("libOpenCL.so.1", RTLD_NOW);
    if (lib == nullptr) return Fail(why, "no OpenCL library");
    GetPlatformIDs = reinterpret_cast<decltype(GetPlatformIDs)>(dlsym(lib, "clGetPlatformIDs"));
    GetDeviceIDs = reinterpret_cast<decltype(GetDeviceIDs)>(dlsym(lib, "clGetDeviceIDs"));
    CreateContext = reinterpret_cast<decltype(CreateContext)>(dlsym(lib, "clCreateContext"));
    ReleaseContext = reinterpret_cast<decltype(ReleaseContext)>(dlsym(lib, "clReleaseContext"));
    ReleaseProgram = reinterpret_cast<decltype(ReleaseProgram)>(dlsym(lib, "clReleaseProgram"));
    if (!GetPlatformIDs || !GetDeviceIDs || !CreateContext || !ReleaseContext || !ReleaseProgram) {
      return Fail(why, "OpenCL library without the entry points");
    }
    cl_platform_id platform;
    cl_uint n = 0;
    if (GetPlatformIDs(1, &platform, &n) != CL_SUCCESS || n == 0) {
      return Fail(why, "no OpenCL platform");
    }
    if (GetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &device, &n) != CL_SUCCESS || n == 0) {
      return Fail(why, "no OpenCL device");
    }
    cl_int err = CL_SUCCESS;
    context = CreateContext(nullptr, 1, &device, nullptr, nullptr, &err);
    return context != nullptr || Fail(why, "no OpenCL context");
  }
  ~OpenCl() {
    if (context != nullptr) ReleaseContext(context);
  }
  static bool Fail(std::string *why, const char *what) {
    *why = what;
    return false;
  }
};

TEST(ProgramCacheApi, BuildsFromSourceThenFromTheCachedBinary) {
  OpenCl cl;
  std::string why;
  if (!cl.Init(&why)) GTEST_SKIP() << why;
  test::TempDir dir;
  const std::string path = dir.Path("mace_cl_compiled_program.bin");
  const char src[] = "kernel void twice(global float *x) { x[get_global_id(0)] *= 2.0f; }";
  const size_t len = strlen(src);
  for (int run = 0; run < 2; ++run) {
    SCOPED_TRACE(run == 0 ? "first run: built from source" : "second run: from the binary");
    MaceProgramCache *c = OpenCache(path);
    ASSERT_NE(nullptr, c);
    void *program = nullptr;
    ASSERT_EQ(MACE_STORAGE_OK, mace_program_cache_build(c, cl.context, cl.device, "twice", src,
                                                        len, "-DX=1", &program))
        << mace_storage_last_error(nullptr);
    ASSERT_NE(nullptr, program);
    cl.ReleaseProgram(static_cast<cl_program>(program));
    MaceStorageValue *binary = nullptr;
    ASSERT_EQ(MACE_STORAGE_OK, mace_program_cache_get_binary(c, cl.device, "twice", src, len,
                                                             "-DX=1", &binary));
    size_t n = 0;
    EXPECT_NE(nullptr, mace_storage_value_data(binary, &n));
    EXPECT_GT(n, 0u);
    mace_storage_value_free(binary);
    EXPECT_EQ(MACE_STORAGE_NOT_FOUND, mace_program_cache_get_binary(c, cl.device, "twice", src,
                                                                    len, "-DX=2", &binary));
    EXPECT_EQ(nullptr, binary);
    MaceProgramCacheStats stats;
    ASSERT_EQ(MACE_STORAGE_OK, mace_program_cache_stats(c, &stats));
    EXPECT_EQ(run == 0 ? 0u : 1u, stats.hits);
    EXPECT_EQ(run == 0 ? 1u : 0u, stats.misses);
    EXPECT_EQ(0u, stats.rejected);
    mace_program_cache_mark_healthy(c);
    mace_program_cache_close(c);
  }
}

}  // namespace
