// Drop-in replacement for MACE's mace/core/kv_storage.cc (MACE v0.12 to v1.1). Compiled in its
// place against MACE's own mace/core/kv_storage.h, it implements FileStorage, FileStorageFactory
// and ReadOnlyByteStreamStorage over mace-storage: checksummed entries, atomic flushes, damaged
// files salvaged instead of crashing MACE.
//
// MACE allocates these objects and its header fixes their members and inline destructors, so
// nothing here outlives a call: each call opens the store, copies between it and data_ (the map
// Find hands out pointers into), and closes it.
//
// Crash-loop guard: MACE hands a binary to the driver right after Find returns it, and a driver can
// crash on one. Find marks the program key in flight in this process's own marker (one small
// write, no fsync); the mark ends when the driver evidently returned: the process's next Find,
// Insert or Flush on that cache, the storage's destruction (for storages the factory made), or a
// normal exit. If the process dies with a mark standing, the next Load evicts that entry, and three
// such starts in a row set the file aside. A mark also ends after a window (the last resort, for a
// process killed long after its final Find). Load also drops the cache after an OS update
// (Android's ro.build.fingerprint, or MACE_STORAGE_OS_BUILD_ID elsewhere).
//
// Flush writes only what this storage changed since its Load (or its last successful Flush):
// keys another process, or another FileStorage on the same path, committed meanwhile are kept.
// After Clear() the file holds only what was inserted since. MACE's header fixes FileStorage's
// members, so what changed is kept beside it, by object address, reset by the constructor.
//
// Macros: MACE_STORAGE_MACE_1_0 writes the format MACE v0.12-v1.0 reads (default: MACE v1.1's);
// MACE_STORAGE_STRICT_FLUSH makes a failed flush return -1 (MACE then aborts) instead of 0;
// MACE_STORAGE_GUARD_WINDOW_MS sets the guard's last-resort window (default 2000 ms).

#include "mace/core/kv_storage.h"

#include <stdint.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "mace_storage.h"
#include "mace_storage.hpp"
#include "mace_storage_dropin.h"

namespace {

#ifdef MACE_STORAGE_MACE_1_0
const int32_t kWriteFormat = MACE_STORAGE_FORMAT_CHECKED_1_0;
#else
const int32_t kWriteFormat = MACE_STORAGE_FORMAT_CHECKED_1_1;
#endif

#ifdef MACE_STORAGE_STRICT_FLUSH
const bool kStrictFlush = true;
#else
const bool kStrictFlush = false;
#endif

#ifdef MACE_STORAGE_GUARD_WINDOW_MS
const uint32_t kGuardWindowMs = MACE_STORAGE_GUARD_WINDOW_MS;
#else
const uint32_t kGuardWindowMs = 2000;
#endif

typedef std::map<std::string, std::vector<unsigned char>> Entries;

// Program binaries are what a driver loads; the metadata MACE checks them with is never evicted
// (losing the platform-info entry would let MACE keep binaries unchecked). The library owns the
// key names, so it answers.
bool IsProgramBinary(const std::string &key) {
  return mace_storage_key_is_program_binary(reinterpret_cast<const uint8_t *>(key.data()),
                                            key.size()) != 0;
}

std::atomic<uint64_t> g_flush_failures(0);

void Warn(const std::string &message) {
  mace_storage_log(MACE_STORAGE_LOG_WARNING, message.c_str());
}

// Adds the entries of s to *data; keys already in *data keep their value (it is the newer one).
void CopyEntries(const mace_storage::Storage &s, Entries *data) {
  s.ForEach([data](const std::string &key, const uint8_t *value, size_t size) {
    if (data->find(key) == data->end()) {
      (*data)[key] = std::vector<unsigned char>(value, value + size);
    }
    return true;
  });
}

// What one FileStorage changed since its Load or last successful Flush.
struct Changes {
  Changes() : cleared(false) {}
  bool cleared;                // Clear() was called: the file keeps only what is inserted since
  std::set<std::string> keys;  // keys inserted with a new value
};

// The Changes of every FileStorage with some, by address. Never destroyed: MACE may flush from a
// static destructor, after this file's statics would be gone.
std::mutex &ChangesMutex() {
  static std::mutex *mutex = new std::mutex;
  return *mutex;
}
std::map<const void *, Changes> &AllChanges() {
  static std::map<const void *, Changes> *all = new std::map<const void *, Changes>;
  return *all;
}

void ForgetChanges(const void *storage) {
  std::lock_guard<std::mutex> lock(ChangesMutex());
  AllChanges().erase(storage);
}

// Applies this storage's changes to s: after a Clear, s holds exactly data; otherwise the changed
// keys are put (putting an unchanged value is no change, so such a flush stays a cheap append)
// and everything else in the file, whoever committed it, stays.
MaceStorageStatus ApplyChanges(mace_storage::Storage *s, const Changes &changes,
                               const Entries &data) {
  MaceStorageStatus status = MACE_STORAGE_OK;
  if (changes.cleared) {
    status = s->Clear();
    for (Entries::const_iterator it = data.begin(); status == MACE_STORAGE_OK && it != data.end();
         ++it) {
      status = s->Put(it->first, it->second);
    }
    return status;
  }
  for (std::set<std::string>::const_iterator k = changes.keys.begin();
       status == MACE_STORAGE_OK && k != changes.keys.end(); ++k) {
    Entries::const_iterator it = data.find(*k);
    if (it != data.end()) status = s->Put(it->first, it->second);
  }
  return status;
}

// Deletes a storage the factory made, first ending its process's guard mark: MACE only destroys
// it once its programs are built.
struct EndMarkAndDelete {
  std::string path;
  void operator()(mace::KVStorage *storage) const {
    mace_storage_guard_end(path.c_str());
    ForgetChanges(storage);
    delete storage;
  }
};

}  // namespace

// Counts the drop-in's failed flushes (declared in mace_storage_dropin.h).
extern "C" uint64_t mace_storage_dropin_flush_failures(void) { return g_flush_failures.load(); }

namespace mace {

class FileStorageFactory::Impl {
 public:
  explicit Impl(const std::string &path) : path_(path) {}

  std::shared_ptr<KVStorage> CreateStorage(const std::string &name) {
    EndMarkAndDelete deleter;
    deleter.path = path_ + "/" + name;
    return std::shared_ptr<KVStorage>(new FileStorage(deleter.path), deleter);
  }

 private:
  std::string path_;
};

FileStorageFactory::FileStorageFactory(const std::string &path) : impl_(new Impl(path)) {}

FileStorageFactory::~FileStorageFactory() {}

std::shared_ptr<KVStorage> FileStorageFactory::CreateStorage(const std::string &name) {
  return impl_->CreateStorage(name);
}

FileStorage::FileStorage(const std::string &file_path)
    : loaded_(false), data_changed_(false), file_path_(file_path) {
  // A storage freed by MACE's own destructor may have left changes under this address.
  ForgetChanges(this);
}

int FileStorage::Load() {
  utils::WriteLock lock(&data_mutex_);
  if (loaded_) return 0;
  // A missing file opens empty (logged at INFO), a damaged one with what verified, an unreadable
  // one is moved aside (both logged at WARNING): only an I/O error is left to report here.
  MaceStorageOptions options = MaceStorageOptions();
  options.crash_guard_ms = kGuardWindowMs;
  options.check_os_build = 1;
  mace_storage::Storage s;
  if (mace_storage::Storage::Open(file_path_, &options, &s) != MACE_STORAGE_OK) {
    Warn("could not read the cache " + file_path_ + " (" + s.LastError() +
         "): Load returned -1; MACE starts without the cached programs and builds them");
    return -1;
  }
  CopyEntries(s, &data_);
  loaded_ = true;
  return 0;
}

bool FileStorage::Clear() {
  utils::WriteLock lock(&data_mutex_);
  mace_storage_guard_end(file_path_.c_str());
  data_.clear();
  data_changed_ = true;
  std::lock_guard<std::mutex> changes_lock(ChangesMutex());
  Changes &changes = AllChanges()[this];
  changes.cleared = true;
  changes.keys.clear();
  return true;
}

bool FileStorage::Insert(const std::string &key, const std::vector<unsigned char> &value) {
  utils::WriteLock lock(&data_mutex_);
  // The driver returned from the binary Find gave last: MACE inserts after building.
  mace_storage_guard_end(file_path_.c_str());
  // MACE re-inserts the same device and platform values on every run: no change, no flush.
  Entries::iterator it = data_.find(key);
  if (it != data_.end() && it->second == value) return true;
  data_[key] = value;
  data_changed_ = true;
  std::lock_guard<std::mutex> changes_lock(ChangesMutex());
  AllChanges()[this].keys.insert(key);
  return true;
}

const std::vector<unsigned char> *FileStorage::Find(const std::string &key) {
  utils::ReadLock lock(&data_mutex_);
  Entries::const_iterator it = data_.find(key);
  // MACE builds one program at a time: a new Find means the driver returned from the last one.
  if (it != data_.end() && IsProgramBinary(key)) {
    mace_storage_guard_mark(file_path_.c_str(), reinterpret_cast<const uint8_t *>(key.data()),
                            key.size());
  } else {
    mace_storage_guard_end(file_path_.c_str());
  }
  return it == data_.end() ? nullptr : &it->second;
}

int FileStorage::Flush() {
  // Exclusive: the flush reads data_ and clears data_changed_, and two flushes must not interleave.
  utils::WriteLock lock(&data_mutex_);
  mace_storage_guard_end(file_path_.c_str());
  if (!data_changed_) return 0;
  Changes changes;
  {
    std::lock_guard<std::mutex> changes_lock(ChangesMutex());
    changes = AllChanges()[this];
  }
  MaceStorageOptions options = MaceStorageOptions();
  options.format = kWriteFormat;
  options.quiet = 1;  // Load already reported what the file held.
  mace_storage::Storage s;
  MaceStorageStatus status = mace_storage::Storage::Open(file_path_, &options, &s);
  if (status == MACE_STORAGE_OK) status = ApplyChanges(&s, changes, data_);
  if (status == MACE_STORAGE_OK) status = s.Flush();
  if (status == MACE_STORAGE_OK) {
    data_changed_ = false;
    ForgetChanges(this);
    return 0;
  }
  // MACE aborts the app when Flush returns -1 (a missing directory, no permission, a full disk):
  // losing the cache write costs one rebuild, an abort costs the app.
  ++g_flush_failures;
  Warn("could not save the cache " + file_path_ + " (" + s.LastError() + "): " +
       (kStrictFlush ? "returned -1 as MACE_STORAGE_STRICT_FLUSH asks"
                     : "returned success so MACE keeps running") +
       "; the cache stays in memory and is retried at the next flush");
  return kStrictFlush ? -1 : 0;
}

ReadOnlyByteStreamStorage::ReadOnlyByteStreamStorage(const unsigned char *byte_stream,
                                                     size_t byte_stream_size) {
  mace_storage::Storage s;
  if (mace_storage::Storage::OpenBytes(byte_stream, byte_stream_size, &s) != MACE_STORAGE_OK) {
    Warn("the precompiled OpenCL binary given to MACE (" + std::to_string(byte_stream_size) +
         " bytes) is not a cache (" + s.LastError() +
         "): ignored it; MACE builds the programs it does not find");
    return;
  }
  CopyEntries(s, &data_);
}

int ReadOnlyByteStreamStorage::Load() { return 0; }

bool ReadOnlyByteStreamStorage::Clear() {
  Warn("Clear() on the read-only precompiled OpenCL binary: ignored, returned false");
  return false;
}

bool ReadOnlyByteStreamStorage::Insert(const std::string &key,
                                       const std::vector<unsigned char> &) {
  Warn("Insert(\"" + key + "\") on the read-only precompiled OpenCL binary: ignored, returned false");
  return false;
}

const std::vector<unsigned char> *ReadOnlyByteStreamStorage::Find(const std::string &key) {
  Entries::const_iterator it = data_.find(key);
  return it == data_.end() ? nullptr : &it->second;
}

int ReadOnlyByteStreamStorage::Flush() { return 0; }

}  // namespace mace
