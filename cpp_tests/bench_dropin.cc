// Benchmark of the MACE drop-in (src/cpp/mace_kv_storage.cc), compiled like the drop-in tests
// against the MACE interface header: FileStorage::Load then Find of every key, and of a tenth of
// the keys (a model that uses some of the cached programs: the same model at every start, and,
// cold, another model than the start before), as MACE does at start-up, next to a
// bare read() of the same file into memory; the peak RSS of each in a fresh process relative to
// the file size; and a Flush after one new 100 KB program next to write+fsync of 100 KB.
// scripts/bench.sh runs it on the files that benches/storage.rs leaves and prints its rows in one
// table with the Rust figures.
//
//   bench_dropin [--reps N] [--warm-only] FILE...   (the flush row uses a copy of the first FILE,
//                                                   which should be checked-1.1: only it appends)
//   bench_dropin --rss FILE KEYS   (internal: one Load + Find of each line of the file KEYS; prints
//                                   VmHWM before and after, bytes)
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

// Every tenth key: with the sorted keys of a MACE cache, about as many program binaries as source
// hashes, a tenth of the programs and of their bytes.
std::vector<std::string> TenthOf(const std::vector<std::string> &keys, size_t from = 0) {
  std::vector<std::string> some;
  for (size_t i = from; i < keys.size(); i += 10) some.push_back(keys[i]);
  return some;
}

// A storage for path made by MACE's factory, as MACE makes it: destroying it ends its use of the
// store the drop-in keeps open for the path, so the next one opens the file again.
std::shared_ptr<mace::KVStorage> StorageFor(const std::string &path) {
  size_t slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  mace::FileStorageFactory factory(dir);
  return factory.CreateStorage(slash == std::string::npos ? path : path.substr(slash + 1));
}

// What MACE does at start-up: Load, then Find of each key. Returns the bytes found.
size_t LoadAndFind(mace::KVStorage *fs, const std::vector<std::string> &keys) {
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

// Load + Find of keys (every key, or some), against a bare read() of the whole file. Repetition i
// finds sets[i % sets.size()]: one set is a model started again and again; several, a start of
// another model each time. Each start leaves the read-ahead note the next one reads.
void Timing(const std::string &path, const std::vector<std::vector<std::string> > &sets,
            const std::string &what, double target, int reps, bool cold) {
  std::vector<double> ours, base, ratio;
  size_t found = 0;
  for (int i = 0; i < reps; ++i) {
    const std::vector<std::string> &keys = sets[i % sets.size()];
    // Each side starts from the same page cache: emptied (cold) or holding the file (warm).
    std::unique_ptr<unsigned char[]> warm;
    if (!cold) BareRead(path, &warm);
    warm.reset();
    double o = 0, b = 0;
    for (int side = 0; side < 2; ++side) {
      bool ours_now = (side == 0) == (i % 2 == 0);  // alternate which side goes first
      if (cold && !DropCaches()) Die("cannot drop the page cache");
      if (ours_now) {
        Clock::time_point t = Clock::now();
        {
          std::shared_ptr<mace::KVStorage> fs = StorageFor(path);
          found = LoadAndFind(fs.get(), keys);
          o = Ms(Clock::now() - t);
        }
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
  std::string name = "drop-in Load + Find of " + what;
  if (sets.size() == 1 && what != "every key") {
    name += Fmt(" (%.1f MB of values)", static_cast<double>(found) / 1e6);
  }
  PrintRow(name + ", " + Label(path) + (cold ? " (cold cache)" : " (warm cache)"),
           Fmt("%.2f ms", Median(ours)), Fmt("read() %.2f ms", Median(base)), Median(ratio), target);
}

// Copies the file at from to to (not timed).
void CopyFile(const std::string &from, const std::string &to) {
  std::unique_ptr<unsigned char[]> buf;
  size_t size = BareRead(from, &buf);
  int fd = open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) Die("cannot create " + to);
  size_t done = 0;
  while (done < size) {
    ssize_t n = write(fd, buf.get() + done, size - done);
    if (n <= 0) Die("cannot write " + to);
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) Die("cannot sync " + to);
}

// Creates path, writes the bytes, fsyncs and closes it: what a flush of them costs at least.
void WriteAndSync(const std::string &path, const std::vector<unsigned char> &bytes) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) Die("cannot create " + path);
  if (write(fd, &bytes[0], bytes.size()) != static_cast<ssize_t>(bytes.size())) {
    Die("cannot write " + path);
  }
  if (fsync(fd) != 0 || close(fd) != 0) Die("cannot sync " + path);
}

// After Load (and the Finds of a start), MACE builds one new program and flushes: Insert of a
// 100 KB binary + Flush, against creating a file, writing 100 KB and fsync.
void FlushTiming(const std::string &path, int reps) {
  const std::string work = path + ".flush-bench", plain = path + ".write-bench";
  std::vector<unsigned char> binary(100 * 1024);
  for (size_t j = 0; j < binary.size(); ++j) binary[j] = static_cast<unsigned char>(j * 13 + 5);
  std::vector<double> ours, base, ratio;
  for (int i = 0; i < reps; ++i) {
    CopyFile(path, work);
    unlink(plain.c_str());
    double o = 0, b = 0;
    for (int side = 0; side < 2; ++side) {
      bool ours_now = (side == 0) == (i % 2 == 0);
      if (ours_now) {
        std::shared_ptr<mace::KVStorage> fs = StorageFor(work);
        if (fs->Load() != 0) Die("Load failed");
        Clock::time_point t = Clock::now();
        fs->Insert("bench_new_program -DBENCH=" + std::to_string(i), binary);
        if (fs->Flush() != 0) Die("Flush failed");
        o = Ms(Clock::now() - t);
      } else {
        Clock::time_point t = Clock::now();
        WriteAndSync(plain, binary);
        b = Ms(Clock::now() - t);
      }
    }
    ours.push_back(o);
    base.push_back(b);
    ratio.push_back(o / b);
  }
  unlink(work.c_str());
  unlink(plain.c_str());
  unlink((work + ".lock").c_str());
  PrintRow("drop-in Insert of one new 100 KB program + Flush, " + Label(path),
           Fmt("%.2f ms", Median(ours)), Fmt("write+fsync 100 KB %.2f ms", Median(base)),
           Median(ratio), 2);
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

// Peak RSS growth of a fresh process that Loads path and Finds keys (handed over in a file, so the
// child need not open the cache to list them: that read would raise its peak before the Load).
long long RssGrowth(const std::string &path, const std::vector<std::string> &keys) {
  char list[] = "/tmp/bench_dropin_keys.XXXXXX";
  int fd = mkstemp(list);
  if (fd < 0) Die("cannot create a key list");
  std::string text;
  for (size_t i = 0; i < keys.size(); ++i) text += keys[i] + "\n";
  if (write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) Die("key list");
  close(fd);
  std::string cmd = "'" + SelfPath() + "' --rss '" + path + "' '" + list + "'";
  FILE *p = popen(cmd.c_str(), "r");
  if (p == nullptr) Die("cannot run " + cmd);
  long long before = 0, after = 0;
  int got = fscanf(p, "%lld %lld", &before, &after);
  if (pclose(p) != 0 || got != 2) Die("the RSS child failed");
  unlink(list);
  return after - before;
}

// The lines of the file at path.
std::vector<std::string> Lines(const std::string &path) {
  std::unique_ptr<unsigned char[]> buf;
  size_t size = BareRead(path, &buf);
  std::vector<std::string> lines;
  std::string line;
  for (size_t i = 0; i < size; ++i) {
    if (buf[i] == '\n') {
      lines.push_back(line);
      line.clear();
    } else {
      line += static_cast<char>(buf[i]);
    }
  }
  return lines;
}

void RssRow(const std::string &path, const std::vector<std::string> &keys, const std::string &what,
            double target) {
  std::vector<double> growth;
  for (int i = 0; i < 3; ++i) growth.push_back(static_cast<double>(RssGrowth(path, keys)));
  std::unique_ptr<unsigned char[]> buf;
  double size = static_cast<double>(BareRead(path, &buf));
  double g = Median(growth);
  PrintRow("drop-in peak RSS growth during Load + Find of " + what + ", " + Label(path),
           Fmt("%.1f MB", g / 1e6), Fmt("file %.1f MB", size / 1e6), g / size, target);
}

}  // namespace

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--rss") == 0) {
    std::vector<std::string> keys = Lines(argv[3]);
    long long before = VmHwm();
    {
      std::shared_ptr<mace::KVStorage> fs = StorageFor(argv[2]);
      LoadAndFind(fs.get(), keys);
      printf("%lld %lld\n", before, VmHwm());
    }
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
    const std::vector<std::string> keys = Keys(files[f]), some = TenthOf(keys);
    const std::string tenth =
        std::to_string(some.size()) + " of " + std::to_string(keys.size()) + " keys";
    const std::vector<std::vector<std::string> > all(1, keys), one(1, some);
    if (cold) Timing(files[f], all, "every key", 1.5, reps, true);
    Timing(files[f], all, "every key", 1.5, reps, false);
    if (cold) {
      Timing(files[f], one, tenth, 0.25, reps, true);
      // The note each start finds names another model's programs: it reads those ahead for
      // nothing, and its own one at a time.
      std::vector<std::vector<std::string> > others;
      for (size_t from = 1; from < 10; ++from) others.push_back(TenthOf(keys, from));
      Timing(files[f], others, tenth + ", another tenth than the start before", 0.25, reps, true);
    }
    Timing(files[f], one, tenth, 0.25, reps, false);
  }
  for (size_t f = 0; f < files.size(); ++f) {
    const std::vector<std::string> keys = Keys(files[f]), some = TenthOf(keys);
    RssRow(files[f], keys, "every key", 2.2);
    RssRow(files[f], some,
           std::to_string(some.size()) + " of " + std::to_string(keys.size()) + " keys", 0.2);
  }
  // Appending needs a checked-1.1 file; a stock file's first flush rewrites it in that format.
  FlushTiming(files[0], reps);
  WaitForGuardMarks();
  return 0;
}
