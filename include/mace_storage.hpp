// mace-storage for C++11: RAII handles over the C ABI of mace_storage.h, status returns, no
// exceptions, no RTTI.
//
// Define MACE_STORAGE_WITH_MACE_INTERFACE before including this header to also get
// KVStorageAdapter and KVStorageAdapterFactory, which implement MACE's KVStorage interface and
// need MACE's "mace/core/kv_storage.h" on the include path. Plain C++ users need no MACE header.
#ifndef MACE_STORAGE_HPP_
#define MACE_STORAGE_HPP_

#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "mace_storage.h"

#ifdef MACE_STORAGE_WITH_MACE_INTERFACE
#include <map>
#include <mutex>
#include <utility>

#include "mace/core/kv_storage.h"
#endif

namespace mace_storage {

namespace internal {

inline const uint8_t *Bytes(const std::string &s) {
  return reinterpret_cast<const uint8_t *>(s.data());
}

struct ValueFree {
  void operator()(MaceStorageValue *v) const { mace_storage_value_free(v); }
};

struct StorageClose {
  void operator()(MaceStorage *s) const { mace_storage_close(s); }
};

}  // namespace internal

// The library version, "MAJOR.MINOR.PATCH" (equal to MACE_STORAGE_VERSION of a matching header).
inline std::string Version() { return mace_storage_version(); }

// A value read from a Storage: its bytes stay valid until this object is destroyed or assigned,
// whatever happens to the store meanwhile (overwrites, clear, close).
class Value {
 public:
  // An empty value (data() is NULL, size() is 0).
  Value() {}
  // Takes ownership of a value from mace_storage_get (NULL gives an empty value).
  explicit Value(MaceStorageValue *v) : v_(v) {}

  // The bytes, or NULL when this holds no value.
  const uint8_t *data() const { return mace_storage_value_data(v_.get(), nullptr); }
  // The number of bytes (0 when this holds no value).
  size_t size() const {
    size_t n = 0;
    mace_storage_value_data(v_.get(), &n);
    return n;
  }
  // Whether this holds a value (an empty value read from the store counts).
  bool has_value() const { return v_ != nullptr; }
  // A copy of the bytes.
  std::vector<unsigned char> ToVector() const {
    const uint8_t *p = data();
    return p == nullptr ? std::vector<unsigned char>() : std::vector<unsigned char>(p, p + size());
  }

 private:
  std::unique_ptr<MaceStorageValue, internal::ValueFree> v_;
};

// A cache file (or cache bytes) opened as a key-value store; closed when destroyed. Every call
// returns the C status; calls on a Storage that is not open return MACE_STORAGE_INVALID_ARGUMENT.
// Safe to share between threads, except that it must not be closed, moved or destroyed during
// another thread's call.
class Storage {
 public:
  // A Storage that is not open.
  Storage() {}

  // Opens the file at path into *out (options NULL: defaults); on failure *out is left closed.
  static MaceStorageStatus Open(const std::string &path, const MaceStorageOptions *options,
                                Storage *out) {
    if (out == nullptr) return MACE_STORAGE_INVALID_ARGUMENT;
    MaceStorage *s = nullptr;
    MaceStorageStatus status = mace_storage_open(path.c_str(), options, &s);
    out->s_.reset(s);
    return status;
  }

  // Opens a read-only store over size bytes at data into *out, without copying them: the bytes
  // must outlive the store and every Value got from it. On failure *out is left closed.
  static MaceStorageStatus OpenBytes(const void *data, size_t size, Storage *out) {
    if (out == nullptr) return MACE_STORAGE_INVALID_ARGUMENT;
    MaceStorage *s = nullptr;
    MaceStorageStatus status =
        mace_storage_open_bytes(static_cast<const uint8_t *>(data), size, &s);
    out->s_.reset(s);
    return status;
  }

  // Whether a store is open.
  bool is_open() const { return s_ != nullptr; }
  // The C handle (NULL when not open), still owned by this object.
  MaceStorage *handle() const { return s_.get(); }
  // Closes the store now; unflushed changes are discarded, values already got stay valid.
  void Close() { s_.reset(); }

  // Reads key into *out; MACE_STORAGE_NOT_FOUND leaves *out empty.
  MaceStorageStatus Get(const std::string &key, Value *out) const {
    MaceStorageValue *v = nullptr;
    MaceStorageStatus status =
        mace_storage_get(s_.get(), internal::Bytes(key), key.size(), out ? &v : nullptr);
    if (out != nullptr) *out = Value(v);
    return status;
  }

  // Sets key to a copy of size bytes at value (durable after Flush).
  MaceStorageStatus Put(const std::string &key, const void *value, size_t size) {
    return mace_storage_put(s_.get(), internal::Bytes(key), key.size(),
                            static_cast<const uint8_t *>(value), size);
  }
  // Sets key to a copy of value (durable after Flush).
  MaceStorageStatus Put(const std::string &key, const std::vector<unsigned char> &value) {
    return Put(key, value.empty() ? nullptr : &value[0], value.size());
  }

  // Removes key; MACE_STORAGE_NOT_FOUND if it was absent.
  MaceStorageStatus Remove(const std::string &key) {
    return mace_storage_remove(s_.get(), internal::Bytes(key), key.size());
  }
  // Removes every entry (durable after Flush).
  MaceStorageStatus Clear() { return mace_storage_clear(s_.get()); }
  // Commits every change atomically and durably; on failure the changes stay for the next Flush.
  MaceStorageStatus Flush() { return mace_storage_flush(s_.get()); }
  // Records this process's uses as a use record when the store has a budget and its file is past
  // half of it (see mace_storage_record_uses); *wrote (if given) says whether it wrote.
  MaceStorageStatus RecordUses(bool *wrote = nullptr) {
    int32_t w = 0;
    MaceStorageStatus status = mace_storage_record_uses(s_.get(), &w);
    if (wrote != nullptr) *wrote = w != 0;
    return status;
  }

  // Fills *out with the store's counters.
  MaceStorageStatus Stats(MaceStorageStats *out) const { return mace_storage_stats(s_.get(), out); }
  // Fills *out with what opening the file found.
  MaceStorageStatus Report(MaceStorageOpenReport *out) const {
    return mace_storage_open_findings(s_.get(), out);
  }
  // What opening the file found, one sentence per line ("" if nothing, or not open).
  std::string Notes() const { return mace_storage_open_notes(s_.get()); }
  // The message of this thread's last failed call on this store; when not open, of the last
  // failed call of any store (such as a failed Open).
  std::string LastError() const { return mace_storage_last_error(s_.get()); }

  // Calls f(const std::string &key, const uint8_t *value, size_t size) for every entry in key
  // order, on a snapshot taken at the call; f returns false to stop. The value bytes are valid
  // during the call only.
  template <typename F>
  MaceStorageStatus ForEach(F &&f) const {
    typedef typename std::remove_reference<F>::type Fn;
    return mace_storage_for_each(s_.get(), &Visit<Fn>,
                                 const_cast<void *>(static_cast<const void *>(&f)));
  }

  // Calls f(const std::string &key) for every key in key order, on a snapshot taken at the call,
  // without reading or copying any value; f returns false to stop.
  template <typename F>
  MaceStorageStatus ForEachKey(F &&f) const {
    typedef typename std::remove_reference<F>::type Fn;
    return mace_storage_for_each_key(s_.get(), &VisitKey<Fn>,
                                     const_cast<void *>(static_cast<const void *>(&f)));
  }

 private:
  template <typename Fn>
  static int32_t VisitKey(const uint8_t *key, size_t key_len, void *user_data) {
    Fn &f = *static_cast<Fn *>(user_data);
    return f(std::string(reinterpret_cast<const char *>(key), key_len)) ? 0 : 1;
  }

  template <typename Fn>
  static int32_t Visit(const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len,
                       void *user_data) {
    Fn &f = *static_cast<Fn *>(user_data);
    return f(std::string(reinterpret_cast<const char *>(key), key_len), value, value_len) ? 0 : 1;
  }

  std::unique_ptr<MaceStorage, internal::StorageClose> s_;
};

namespace internal {

struct ProgramCacheClose {
  void operator()(MaceProgramCache *c) const { mace_program_cache_close(c); }
};

}  // namespace internal

// An OpenCL program cache (see docs/PROGRAM_CACHE.md). OpenCL handles pass as void* so this
// header needs no OpenCL headers.
class ProgramCache {
 public:
  // A cache that is not open.
  ProgramCache() {}

  // Opens the cache at path into *out (options NULL: defaults); on failure *out is left closed.
  static MaceStorageStatus Open(const std::string &path, const MaceProgramCacheOptions *options,
                                ProgramCache *out) {
    if (out == nullptr) return MACE_STORAGE_INVALID_ARGUMENT;
    MaceProgramCache *c = nullptr;
    MaceStorageStatus status = mace_program_cache_open(path.c_str(), options, &c);
    out->c_.reset(c);
    return status;
  }

  // Whether a cache is open.
  bool is_open() const { return c_ != nullptr; }
  // The C handle (NULL when not open), still owned by this object.
  MaceProgramCache *handle() const { return c_.get(); }

  // Builds program_key for one device from the cached binary or, failing that, from source;
  // *program receives a built cl_program the caller releases.
  MaceStorageStatus Build(void *context, void *device, const std::string &program_key,
                          const std::string &source, const std::string &build_options,
                          void **program) {
    return mace_program_cache_build(c_.get(), context, device, program_key.c_str(), source.data(),
                                    source.size(), build_options.c_str(), program);
  }

  // Declares the app healthy: the binaries loaded so far did not crash it.
  void MarkHealthy() { mace_program_cache_mark_healthy(c_.get()); }
  // Fills *out with the cache's counters.
  MaceStorageStatus Stats(MaceProgramCacheStats *out) const {
    return mace_program_cache_stats(c_.get(), out);
  }

 private:
  std::unique_ptr<MaceProgramCache, internal::ProgramCacheClose> c_;
};

// Sets the program cache (or MACE cache file) at path aside so the next start rebuilds every
// program from source: call it when MACE's Init or Run fails after loading cached binaries.
// A missing file is no error.
inline MaceStorageStatus ResetProgramCache(const std::string &path) {
  return mace_program_cache_reset(path.c_str());
}

#ifdef MACE_STORAGE_WITH_MACE_INTERFACE

// MACE's KVStorage over a mace-storage file, for code that injects its own KVStorageFactory.
// Find's pointers stay valid until their key is written again (Insert of that key, or Clear).
class KVStorageAdapter : public mace::KVStorage {
 public:
  // An adapter for the file at path; flushes write options->format (NULL: checked-1.1). A failed
  // flush is logged and returns 0 so MACE keeps running (its caller aborts on -1), unless
  // strict_flush asks for -1.
  explicit KVStorageAdapter(const std::string &path, const MaceStorageOptions *options = nullptr,
                            bool strict_flush = false)
      : path_(path), options_(options ? *options : MaceStorageOptions()),
        strict_flush_(strict_flush) {}

  // Opens the file (once): 0, or -1 when it exists but cannot be read.
  int Load() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return OpenLocked() == MACE_STORAGE_OK ? 0 : -1;
  }

  // Removes every entry (durable after Flush).
  bool Clear() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (OpenLocked() != MACE_STORAGE_OK) return false;
    found_.clear();
    return storage_.Clear() == MACE_STORAGE_OK;
  }

  // Sets key to value (durable after Flush).
  bool Insert(const std::string &key, const std::vector<unsigned char> &value) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (OpenLocked() != MACE_STORAGE_OK || storage_.Put(key, value) != MACE_STORAGE_OK) {
      return false;
    }
    // Keep a pointer handed out by Find pointing at the current value.
    std::map<std::string, std::vector<unsigned char>>::iterator it = found_.find(key);
    if (it != found_.end()) it->second = value;
    return true;
  }

  // The value of key, or nullptr.
  const std::vector<unsigned char> *Find(const std::string &key) override {
    std::lock_guard<std::mutex> lock(mutex_);
    std::map<std::string, std::vector<unsigned char>>::iterator it = found_.find(key);
    if (it != found_.end()) return &it->second;
    Value v;
    if (OpenLocked() != MACE_STORAGE_OK || storage_.Get(key, &v) != MACE_STORAGE_OK) {
      return nullptr;
    }
    return &found_.insert(std::make_pair(key, v.ToVector())).first->second;
  }

  // Commits the changes: 0, or on failure 0 after a warning (-1 with strict_flush).
  int Flush() override {
    std::lock_guard<std::mutex> lock(mutex_);
    MaceStorageStatus status = OpenLocked();
    if (status == MACE_STORAGE_OK) status = storage_.Flush();
    if (status == MACE_STORAGE_OK) return 0;
    std::string message = "could not save the cache " + path_ + " (" + storage_.LastError() +
                          "): " +
                          (strict_flush_ ? "returned -1 as asked (strict flush)"
                                         : "returned success so MACE keeps running") +
                          "; the cache stays in memory and is retried at the next flush";
    mace_storage_log(MACE_STORAGE_LOG_WARNING, message.c_str());
    return strict_flush_ ? -1 : 0;
  }

  // The underlying store (stats, open report, errors); valid once Load succeeded.
  const Storage &storage() const { return storage_; }

 private:
  MaceStorageStatus OpenLocked() {
    if (storage_.is_open()) return MACE_STORAGE_OK;
    return Storage::Open(path_, &options_, &storage_);
  }

  const std::string path_;
  const MaceStorageOptions options_;
  const bool strict_flush_;
  std::mutex mutex_;
  Storage storage_;
  // Values handed out by Find, so their pointers outlive the call.
  std::map<std::string, std::vector<unsigned char>> found_;
};

// Creates a KVStorageAdapter for dir + "/" + name, for MACE code that takes a KVStorageFactory.
class KVStorageAdapterFactory : public mace::KVStorageFactory {
 public:
  // Adapters for files in dir, with the options and flush policy of KVStorageAdapter.
  explicit KVStorageAdapterFactory(const std::string &dir,
                                   const MaceStorageOptions *options = nullptr,
                                   bool strict_flush = false)
      : dir_(dir), options_(options ? *options : MaceStorageOptions()),
        strict_flush_(strict_flush) {}

  // A new adapter for dir + "/" + name.
  std::shared_ptr<mace::KVStorage> CreateStorage(const std::string &name) override {
    return std::make_shared<KVStorageAdapter>(dir_ + "/" + name, &options_, strict_flush_);
  }

 private:
  const std::string dir_;
  const MaceStorageOptions options_;
  const bool strict_flush_;
};

#endif  // MACE_STORAGE_WITH_MACE_INTERFACE

}  // namespace mace_storage

#endif  // MACE_STORAGE_HPP_
