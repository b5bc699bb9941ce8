// Helpers shared by the C/C++ tests: temporary directories, files, the golden files and their
// manifest, a capture of the library's log, and minimal stock MACE readers that say whether a
// file is one the stock MACE of that version would load, and what it would see.
#ifndef MACE_STORAGE_CPP_TESTS_TEST_SUPPORT_H_
#define MACE_STORAGE_CPP_TESTS_TEST_SUPPORT_H_

#include <stddef.h>
#include <stdint.h>

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "mace_storage.h"

namespace test {

typedef std::vector<unsigned char> Bytes;
typedef std::map<std::string, Bytes> Entries;

// A fresh directory, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;

  // The directory's path.
  const std::string &path() const { return path_; }
  // path() + "/" + name.
  std::string Path(const std::string &name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The file's bytes; an empty vector (and *ok false) when it cannot be read.
Bytes ReadFile(const std::string &path, bool *ok = nullptr);
// Writes bytes to path, replacing it; false on failure.
bool WriteFile(const std::string &path, const Bytes &bytes);
// Whether path exists (any kind of file).
bool Exists(const std::string &path);
// The bytes of a string.
Bytes B(const std::string &s);
// CRC-32 (IEEE, as zlib) of n bytes.
uint32_t Crc32(const unsigned char *data, size_t n);
// CRC-32 of a byte vector.
inline uint32_t Crc32(const Bytes &b) { return Crc32(b.empty() ? nullptr : &b[0], b.size()); }

// The path of a golden file (read-only: copy it before anything writes to it).
std::string GoldenPath(const std::string &name);
// Copies golden file name to dir/as; false on failure.
bool CopyGolden(const std::string &name, const std::string &to);

// One entry of manifest.json: key, value length, value CRC-32.
struct ManifestEntry {
  std::string key;
  size_t value_len;
  uint32_t value_crc;
};
// The entries manifest.json lists for golden file name (empty if it lists none).
std::vector<ManifestEntry> Manifest(const std::string &name);

// What a stock MACE reader makes of a file: whether it loads it, and the entries it sees.
struct StockView {
  bool loads = false;
  std::string why;      // why it would not load
  Entries entries;      // the first value of each key, as stock MACE keeps it
  int duplicates = 0;   // keys seen more than once
};
// MACE v1.1: the trailing CRC-32 must match; PairContainer/KVPair parsed, unknown fields skipped.
StockView StockRead11(const Bytes &file);
// MACE v0.6-v1.0: int64 count, then int32-length pairs, every length in bounds; the tail ignored.
StockView StockRead10(const Bytes &file);

// Captures the library's log (every level) while alive; restores the default sink afterwards.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture &) = delete;
  LogCapture &operator=(const LogCapture &) = delete;

  // Messages at level that contain needle ("" matches all).
  int Count(MaceStorageLogLevel level, const std::string &needle = "") const;
  // Every message, one per line, for failure output.
  std::string All() const;

 private:
  static void Receive(MaceStorageLogLevel level, const char *message, void *self);

  mutable std::mutex mutex_;
  std::vector<std::pair<MaceStorageLogLevel, std::string>> messages_;
};

}  // namespace test

#endif  // MACE_STORAGE_CPP_TESTS_TEST_SUPPORT_H_
