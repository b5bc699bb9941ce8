// Benchmark of the MACE drop-in (src/cpp/mace_kv_storage.cc), compiled like the drop-in tests
// against the MACE interface header: FileStorage::Load then Find of every key, as MACE does at
// start-up, next to a bare read() of the same file into memory; and the peak RSS of that Load in a
// fresh process relative to the file size. scripts/bench.sh runs it on the files that
// benches/storage.rs leaves and prints its rows in one table with the Rust figures.
//
//   bench_dropin [--reps N] [--warm-only] FILE...
//   bench_dropin --rss FILE     (internal: one Load + Finds; prints VmHWM before and after, bytes)
//
// Find marks each program binary in flight for the crash-loop guard's window, as it does in MACE;
// the benchmark is built with a short window and lets the marks expire before it exits, so that
// the next Load does not take the exit for a crash in the driver.

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "mace/core/kv_storage.h"
#include "mace_storage.hpp"

namespace {

typedef std::chrono::steady_clock Clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

void Die(const std::string &what) {
  fprintf(stderr, "bench_dropin: %s\n", what.c_str());
  exit(2);
}

// A bare read of the whole file into one exact-size, uninitialized buffer; returns its size.
size_t BareRead(const std::string &path, std::unique_ptr<unsigned char[]> *out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Die("cannot open " + path);
  struct stat st;
  if (fstat(fd, &st) != 0) Die("cannot stat " + path);
  size_t size = static_cast<size_t>(st.st_size);
  out->reset(new unsigned char[size]);
  size_t done = 0;
  while (done < size) {
    ssize_t n = read(fd, out->get() + done, size - done);
    if (n <= 0) Die("cannot read " + path);
    done += static_cast<size_t>(n);
  }
  close(fd);
  return size;
}

// Empties the page cache (needs root); false when the kernel refuses.
bool DropCaches() {
  sync();
  FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
  if (f == nullptr) return false;
  bool ok = fputs("3", f) >= 0;
  return fclose(f) == 0 && ok;
}

// Peak resident set size of this process, in bytes.
long long VmHwm() {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == nullptr) Die("cannot read /proc/self/status");
  char line[256];
  long long kb = -1;
  while (fgets(line, sizeof line, f) != nullptr) {
    if (strncmp(line, "VmHWM:", 6) == 0) kb = atoll(line + 6);
  }
  fclose(f);
  if (kb < 0) Die("no VmHWM in /proc/self/status");
  return kb * 1024;
}

std::vector<std::string> Keys(const std::string &path) {
  MaceStorageOptions options = MaceStorageOptions();
  options.read_only = 1;
  options.quiet = 1;
  mace_storage::Storage s;
  if (mace_storage::Storage::Open(path, &options, &s) != MACE_STORAGE_OK) Die("cannot open " + path);
  std::vector<std::string> keys;
  s.ForEach([&keys](const std::string &key, const uint8_t *, size_t) {
    keys.push_back(key);
    return true;
  });
  return keys;
}

// What MACE does at start-up: Load, then Find of each key. Returns the bytes found.
size_t LoadAndFind(mace::FileStorage *fs, const std::vector<std::string> &keys) {
  if (fs->Load() != 0) Die("Load failed");
  size_t bytes = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::vector<unsigned char> *v = fs->Find(keys[i]);
    if (v == nullptr) Die("Find missed " + keys[i]);
    bytes += v->size();
  }
  return bytes;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Label(const std::string &path) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  size_t dot = name.rfind(".bin");
  return dot == std::string::npos ? name : name.substr(0, dot);
}

void PrintRow(const std::string &name, const std::string &ours, const std::string &base,
              double ratio, double target) {
  printf("| %s | %s | %s | %.2fx | <= %gx | %s |\n", name.c_str(), ours.c_str(), base.c_str(),
         ratio, target, ratio <= target ? "yes" : "no");
}

std::string Fmt(const char *format, double v) {
  char buf[64];
  snprintf(buf, sizeof buf, format, v);
  return buf;
}

void Timing(const std::string &path, int reps, bool cold) {
  std::vector<std::string> keys = Keys(path);
  std::vector<double> ours, base, ratio;
  for (int i = 0; i < reps; ++i) {
    // Each side starts from the same page cache: emptied (cold) or holding the file (warm).
    std::unique_ptr<unsigned char[]> warm;
    if (!cold) BareRead(path, &warm);
    warm.reset();
    double o = 0, b = 0;
    for (int side = 0; side < 2; ++side) {
      bool ours_now = (side == 0) == (i % 2 == 0);  // alternate which side goes first
      if (cold && !DropCaches()) Die("cannot drop the page cache");
      if (ours_now) {
        mace::FileStorage fs(path);
        Clock::time_point t = Clock::now();
        LoadAndFind(&fs, keys);
        o = Ms(Clock::now() - t);
      } else {
        std::unique_ptr<unsigned char[]> buf;
        Clock::time_point t = Clock::now();
        BareRead(path, &buf);
        b = Ms(Clock::now() - t);
      }
    }
    ours.push_back(o);
    base.push_back(b);
    ratio.push_back(o / b);
  }
  PrintRow("drop-in Load + Find of every key, " + Label(path) + (cold ? " (cold cache)" : " (warm cache)"),
           Fmt("%.2f ms", Median(ours)), Fmt("read() %.2f ms", Median(base)), Median(ratio), 1.5);
}

// Lets the crash-loop guard's marks (MACE_STORAGE_GUARD_WINDOW_MS) expire before the process exits.
void WaitForGuardMarks() { usleep(3 * MACE_STORAGE_GUARD_WINDOW_MS * 1000); }

std::string SelfPath() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) Die("cannot read /proc/self/exe");
  buf[n] = '\0';
  return buf;
}

// Peak RSS growth of a fresh process that Loads and Finds every key of path.
long long RssGrowth(const std::string &path) {
  std::string cmd = "'" + SelfPath() + "' --rss '" + path + "'";
  FILE *p = popen(cmd.c_str(), "r");
  if (p == nullptr) Die("cannot run " + cmd);
  long long before = 0, after = 0;
  int got = fscanf(p, "%lld %lld", &before, &after);
  if (pclose(p) != 0 || got != 2) Die("the RSS child failed");
  return after - before;
}

}  // namespace

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--rss") == 0) {
    long long before = VmHwm();
    // Listing the keys opens the file too, and frees it before the Load: its peak is lower.
    std::vector<std::string> keys = Keys(argv[2]);
    mace::FileStorage fs(argv[2]);
    LoadAndFind(&fs, keys);
    printf("%lld %lld\n", before, VmHwm());
    WaitForGuardMarks();
    return 0;
  }
  int reps = 7;
  bool warm_only = false;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--warm-only") == 0) {
      warm_only = true;
    } else {
      files.push_back(argv[i]);
    }
  }
  if (files.empty() || reps < 1) Die("usage: bench_dropin [--reps N] [--warm-only] FILE...");
  bool cold = !warm_only && DropCaches();
  for (size_t f = 0; f < files.size(); ++f) {
    if (cold) Timing(files[f], reps, true);
    Timing(files[f], reps, false);
  }
  for (size_t f = 0; f < files.size(); ++f) {
    std::vector<double> growth;
    for (int i = 0; i < 3; ++i) growth.push_back(static_cast<double>(RssGrowth(files[f])));
    std::unique_ptr<unsigned char[]> buf;
    double size = static_cast<double>(BareRead(files[f], &buf));
    double g = Median(growth);
    PrintRow("drop-in peak RSS growth during Load, " + Label(files[f]), Fmt("%.1f MB", g / 1e6),
             Fmt("file %.1f MB", size / 1e6), g / size, 2.2);
  }
  WaitForGuardMarks();
  return 0;
}
