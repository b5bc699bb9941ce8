#include "test_support.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <sstream>

namespace test {

namespace {

int RemoveOne(const char *path, const struct stat *, int, struct FTW *) { return remove(path); }

}  // namespace

TempDir::TempDir() {
  const char *base = getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/mace_storage_test.XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (mkdtemp(&buf[0]) != nullptr) path_ = &buf[0];
}

TempDir::~TempDir() {
  if (!path_.empty()) nftw(path_.c_str(), RemoveOne, 16, FTW_DEPTH | FTW_PHYS);
}

Bytes ReadFile(const std::string &path, bool *ok) {
  Bytes out;
  FILE *f = fopen(path.c_str(), "rb");
  bool good = f != nullptr;
  if (f != nullptr) {
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.insert(out.end(), buf, buf + n);
    good = ferror(f) == 0;
    fclose(f);
  }
  if (ok != nullptr) *ok = good;
  return out;
}

bool WriteFile(const std::string &path, const Bytes &bytes) {
  FILE *f = fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  bool good = bytes.empty() || fwrite(&bytes[0], 1, bytes.size(), f) == bytes.size();
  return fclose(f) == 0 && good;
}

bool Exists(const std::string &path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

Bytes B(const std::string &s) { return Bytes(s.begin(), s.end()); }

uint32_t Crc32(const unsigned char *data, size_t n) {
  static uint32_t table[256];
  static std::once_flag once;
  std::call_once(once, [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
  });
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

std::string GoldenPath(const std::string &name) {
  return std::string(MACE_STORAGE_GOLDEN_DIR) + "/" + name;
}

bool CopyGolden(const std::string &name, const std::string &to) {
  bool ok = false;
  Bytes b = ReadFile(GoldenPath(name), &ok);
  return ok && WriteFile(to, b);
}

std::vector<ManifestEntry> Manifest(const std::string &name) {
  std::vector<ManifestEntry> out;
  bool ok = false;
  Bytes raw = ReadFile(GoldenPath("manifest.json"), &ok);
  std::string json(raw.begin(), raw.end());
  size_t at = json.find("\"" + name + "\"");
  if (at == std::string::npos) return out;
  at = json.find("\"entries\": [", at);
  size_t end = at == std::string::npos ? at : json.find(']', at);
  // Each entry: "key_hex": "..", "value_len": N, "value_crc32": "..".
  while (at != std::string::npos) {
    at = json.find("\"key_hex\": \"", at);
    if (at == std::string::npos || at > end) break;
    at += 12;
    ManifestEntry e;
    for (; json[at] != '"'; at += 2) {
      e.key.push_back(static_cast<char>(strtoul(json.substr(at, 2).c_str(), nullptr, 16)));
    }
    at = json.find("\"value_len\": ", at) + 13;
    e.value_len = strtoul(json.c_str() + at, nullptr, 10);
    at = json.find("\"value_crc32\": \"", at) + 16;
    e.value_crc = static_cast<uint32_t>(strtoul(json.substr(at, 8).c_str(), nullptr, 16));
    out.push_back(e);
  }
  return out;
}

namespace {

// A bounds-checked cursor over bytes.
struct Reader {
  const unsigned char *p;
  const unsigned char *end;

  bool Varint(uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p == end) return false;
      unsigned char b = *p++;
      *v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  bool Skip(uint64_t n) {
    if (n > static_cast<uint64_t>(end - p)) return false;
    p += n;
    return true;
  }
  bool Len(Reader *inner) {
    uint64_t n;
    if (!Varint(&n) || n > static_cast<uint64_t>(end - p)) return false;
    inner->p = p;
    inner->end = p + n;
    p += n;
    return true;
  }
  // Skips a field of any wire type whose tag was just read; groups up to their end tag.
  bool SkipField(uint64_t tag, int depth) {
    uint64_t v;
    Reader inner;
    switch (tag & 7) {
      case 0: return Varint(&v);
      case 1: return Skip(8);
      case 2: return Len(&inner);
      case 5: return Skip(4);
      case 3:
        if (depth > 64) return false;
        while (Varint(&v)) {
          if ((v & 7) == 4) return (v >> 3) == (tag >> 3);
          if ((v >> 3) == 0 || !SkipField(v, depth + 1)) return false;
        }
        return false;
      default: return false;
    }
  }
  bool Fixed(size_t n, uint64_t *v) {
    if (static_cast<size_t>(end - p) < n) return false;
    *v = 0;
    for (size_t i = 0; i < n; ++i) *v |= static_cast<uint64_t>(p[i]) << (8 * i);
    p += n;
    return true;
  }
};

void Keep(StockView *view, const std::string &key, const Bytes &value) {
  if (!view->entries.insert(std::make_pair(key, value)).second) ++view->duplicates;
}

StockView Fail(const std::string &why) {
  StockView v;
  v.why = why;
  return v;
}

}  // namespace

StockView StockRead11(const Bytes &file) {
  if (file.size() < 4) return Fail("shorter than the CRC");
  size_t n = file.size() - 4;
  uint32_t stored = 0;
  for (int i = 0; i < 4; ++i) stored |= static_cast<uint32_t>(file[n + i]) << (8 * i);
  if (Crc32(file.empty() ? nullptr : &file[0], n) != stored) return Fail("CRC mismatch");
  StockView view;
  Reader r = {file.empty() ? nullptr : &file[0], file.empty() ? nullptr : &file[0] + n};
  uint64_t tag;
  while (r.p != r.end) {
    if (!r.Varint(&tag) || (tag >> 3) == 0) return Fail("bad PairContainer tag");
    if (tag != ((1 << 3) | 2)) {
      if (!r.SkipField(tag, 0)) return Fail("bad unknown PairContainer field");
      continue;
    }
    Reader pair;
    if (!r.Len(&pair)) return Fail("KVPair out of bounds");
    std::string key;
    Bytes value;
    while (pair.p != pair.end) {
      Reader field;
      if (!pair.Varint(&tag) || (tag >> 3) == 0) return Fail("bad KVPair tag");
      if (tag == ((1 << 3) | 2) || tag == ((2 << 3) | 2)) {
        if (!pair.Len(&field)) return Fail("KVPair field out of bounds");
        if (tag >> 3 == 1) {
          key.assign(field.p, field.end);
        } else {
          value.assign(field.p, field.end);
        }
      } else if (!pair.SkipField(tag, 0)) {
        return Fail("bad unknown KVPair field");
      }
    }
    Keep(&view, key, value);
  }
  view.loads = true;
  return view;
}

StockView StockRead10(const Bytes &file) {
  Reader r = {file.empty() ? nullptr : &file[0], file.empty() ? nullptr : &file[0] + file.size()};
  uint64_t count;
  if (!r.Fixed(8, &count)) return Fail("no count (stock MACE reads out of bounds)");
  if (count > file.size()) return Fail("count larger than the file");
  StockView view;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t key_len, value_len;
    if (!r.Fixed(4, &key_len) || key_len > 0x7FFFFFFF ||
        key_len > static_cast<uint64_t>(r.end - r.p)) {
      return Fail("key out of bounds (stock MACE reads out of bounds)");
    }
    std::string key(r.p, r.p + key_len);
    r.p += key_len;
    if (!r.Fixed(4, &value_len) || value_len > 0x7FFFFFFF ||
        value_len > static_cast<uint64_t>(r.end - r.p)) {
      return Fail("value out of bounds (stock MACE reads out of bounds)");
    }
    Keep(&view, key, Bytes(r.p, r.p + value_len));
    r.p += value_len;
  }
  view.loads = true;
  return view;
}

LogCapture::LogCapture() {
  mace_storage_set_log_callback(&LogCapture::Receive, this, MACE_STORAGE_LOG_DEBUG);
}

LogCapture::~LogCapture() { mace_storage_set_log_callback(nullptr, nullptr, MACE_STORAGE_LOG_INFO); }

void LogCapture::Receive(MaceStorageLogLevel level, const char *message, void *self) {
  LogCapture *capture = static_cast<LogCapture *>(self);
  std::lock_guard<std::mutex> lock(capture->mutex_);
  capture->messages_.push_back(std::make_pair(level, std::string(message ? message : "")));
}

int LogCapture::Count(MaceStorageLogLevel level, const std::string &needle) const {
  std::lock_guard<std::mutex> lock(mutex_);
  int n = 0;
  for (size_t i = 0; i < messages_.size(); ++i) {
    if (messages_[i].first == level && messages_[i].second.find(needle) != std::string::npos) ++n;
  }
  return n;
}

std::string LogCapture::All() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream out;
  for (size_t i = 0; i < messages_.size(); ++i) {
    out << messages_[i].first << ": " << messages_[i].second << "\n";
  }
  return out.str();
}

}  // namespace test
