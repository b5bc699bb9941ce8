// Drop-in replacement for MACE's mace/core/kv_storage.cc (MACE v0.12 to v1.1). Compiled in its
// place against MACE's own mace/core/kv_storage.h, it implements FileStorage, FileStorageFactory
// and ReadOnlyByteStreamStorage over mace-storage: checksummed entries, atomic flushes, damaged
// files salvaged instead of crashing MACE.
//
// MACE allocates these objects and its header fixes their members and inline destructors, so what
// the drop-in needs beyond them lives in side tables. The store of a path stays open while some
// FileStorage that used it may still exist: one per path in the process, shared by every
// FileStorage on that path (registry by path). Load opens it (or finds it open) and indexes its
// keys; Find reads a value into data_ (the map Find hands out pointers into) the first time MACE
// asks for it, verified there and held nowhere else, so a start costs what the programs MACE uses
// cost, not the whole cache (cold, the store has the kernel read ahead the programs the last start
// read, which MACE asks for one at a time); Flush puts what this storage changed into that store
// and commits it, without opening or reading the file again (the store's flush merges, under the
// cache's lock, what another process committed meanwhile). The store is closed when the last
// storage that used it is gone: destroyed through the factory's deleter, or replaced by a new
// FileStorage at its address (MACE's inline destructor cannot be seen, so a FileStorage that MACE
// deletes itself keeps the store open until then).
//
// A second FileStorage on a path whose store is open sees that store: the file as it was first
// loaded in this process, with what this process's storages flushed since and what other
// processes had committed by the last of those flushes. A second Load of the same object does
// nothing.
//
// Crash-loop guard: MACE hands a binary to the driver right after Find returns it, and a driver can
// crash on one. Find marks the program key in flight in this process's own marker (one small
// write, no fsync); the mark ends when the driver evidently returned: the process's next Find,
// Insert or Flush on that cache, the storage's destruction (for storages the factory made), or a
// normal exit. If the process dies with a mark standing, the next open of the store evicts that
// entry, and three such starts in a row set the file aside. A mark also ends after a window (the
// last resort, for a process killed long after its final Find). The open also drops the cache after
// an OS update (Android's ro.build.fingerprint, or MACE_STORAGE_OS_BUILD_ID elsewhere).
//
// Flush writes only what this storage changed since its Load (or its last successful Flush):
// keys another process, or another FileStorage on the same path, committed meanwhile are kept.
// After Clear() the file holds only what was inserted since.
//
// Macros: MACE_STORAGE_MACE_1_0 writes the format MACE v0.12-v1.0 reads (default: MACE v1.1's);
// MACE_STORAGE_STRICT_FLUSH makes a failed flush return -1 (MACE then aborts) instead of 0;
// MACE_STORAGE_GUARD_WINDOW_MS sets the guard's last-resort window (default 2000 ms);
// MACE_STORAGE_BUDGET_MIB bounds the file (default 64 MiB, 0: no bound): a flush that would
// outgrow it evicts the least recently used program binaries first. The environment variable of
// the same name overrides it at run time.

#include "mace/core/kv_storage.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
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

#ifdef MACE_STORAGE_BUDGET_MIB
const uint32_t kBudgetMib = MACE_STORAGE_BUDGET_MIB;
#else
const uint32_t kBudgetMib = 64;
#endif

// The size budget: MACE_STORAGE_BUDGET_MIB from the environment (a number of MiB, 0 for none)
// when it is one, the build's otherwise.
uint32_t BudgetMib() {
  const char* env = getenv("MACE_STORAGE_BUDGET_MIB");
  if (env == nullptr || *env == '\0') return kBudgetMib;
  char* end = nullptr;
  unsigned long v = strtoul(env, &end, 10);  // NOLINT(runtime/int): strtoul's type
  if (*end != '\0' || v > 0xffffffffUL) return kBudgetMib;
  return static_cast<uint32_t>(v);
}

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

// The store of one path, open for every FileStorage of the process on it. Its mutex makes a
// storage's puts and their flush one step for the other storages on the path, so none commits
// another's changes half done (a Clear and some of the puts after it).
//
// Reference counts are plain integers under the registry's mutex, not std::shared_ptr: core may
// be compiled without -fPIC and still linked into libmace.so (the stand-in MACE of the packaging
// tests is), and copying a shared_ptr makes libstdc++ read glibc's __libc_single_threaded, a
// reference that such an object cannot carry into a shared library.
struct OpenStore {
  explicit OpenStore(const std::string &p) : path(p), users(0) {}
  const std::string path;
  std::mutex mutex;
  mace_storage::Storage storage;
  int users;  // side tables holding it, under RegistryMutex()
};

// The open stores, by path; each lives as long as the side tables of the storages that use it
// (below). Never destroyed: MACE may flush from a static destructor, after this file's statics
// would be gone.
std::mutex &RegistryMutex() {
  static std::mutex *mutex = new std::mutex;
  return *mutex;
}
std::map<std::string, OpenStore *> &Registry() {
  static std::map<std::string, OpenStore *> *all = new std::map<std::string, OpenStore *>;
  return *all;
}

// The store open for path, opened now if none is (quiet: do not log what the open found), with
// one more user; give it back with ReleaseStore. Null when the open fails, with the library's
// message in *error.
OpenStore *AcquireStore(const std::string &path, bool quiet, std::string *error) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  std::map<std::string, OpenStore *> &registry = Registry();
  std::map<std::string, OpenStore *>::iterator it = registry.find(path);
  if (it != registry.end()) {
    ++it->second->users;
    return it->second;
  }
  // A missing file opens empty (logged at INFO), a damaged one with what verified, an unreadable
  // one is moved aside (both logged at WARNING): only an I/O error is left to report.
  MaceStorageOptions options = MaceStorageOptions();
  options.format = kWriteFormat;
  options.crash_guard_ms = kGuardWindowMs;
  options.check_os_build = 1;
  options.budget_mib = BudgetMib();
  // Each value is read and checksummed on its first Find: a model uses a few of the cache's
  // programs, and the others are never read.
  options.verify = MACE_STORAGE_VERIFY_LAZY;
  options.quiet = quiet ? 1 : 0;
  std::unique_ptr<OpenStore> open(new OpenStore(path));
  if (mace_storage::Storage::Open(path, &options, &open->storage) != MACE_STORAGE_OK) {
    *error = open->storage.LastError();
    return nullptr;
  }
  open->users = 1;
  registry[path] = open.get();
  return open.release();
}

// Gives back a store got from AcquireStore (null: nothing); the last user closes it, outside the
// registry's lock.
void ReleaseStore(OpenStore *store) {
  if (store == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(RegistryMutex());
    if (--store->users > 0) return;
    Registry().erase(store->path);
  }
  // MACE flushes only after building programs: a start that only found programs records which it
  // used here (nothing is written unless the cache is past half its budget), so that eviction
  // keeps the programs models use over newer ones nobody asks for. A failure was logged.
  store->storage.RecordUses();
  delete store;
}

// What one FileStorage changed since its Load or last successful Flush.
struct Changes {
  Changes() : cleared(false) {}
  bool cleared;                // Clear() was called: the file keeps only what is inserted since
  std::set<std::string> keys;  // keys inserted with a new value
};

// What the drop-in keeps for one FileStorage beside its fixed members. Its fields are used under
// the storage's data_mutex_ held exclusively, or held shared with mutex (concurrent Finds copy
// values into data_ under it).
struct Side {
  Side() : store(nullptr), from_store(false) {}
  std::mutex mutex;
  Changes changes;
  // The store this storage loaded from and flushes to, one of its users (null until a Load or
  // Flush opened it).
  OpenStore *store;
  // Load found the file, and no Clear came since: Find looks up in the store the keys data_ does
  // not hold. Not a copy of the keys (building one was a tenth of a start): Find sees the store
  // as it is then, with what this process's flushes merged from others since the Load.
  bool from_store;
  // Keys Find looked up in the store and missed: MACE inserts them once built, and the store need
  // not be asked again whether the new value is the stored one.
  std::set<std::string> missed;
};

// The side table of every FileStorage, by address. Never destroyed, as the registry.
std::mutex &SidesMutex() {
  static std::mutex *mutex = new std::mutex;
  return *mutex;
}
std::map<const void *, Side *> &Sides() {
  static std::map<const void *, Side *> *all = new std::map<const void *, Side *>;
  return *all;
}

// The side table of a storage, made on first use. It stays until ForgetStorage, which only runs
// when no call on that storage can be under way (its construction, its deletion).
Side *SideOf(const void *storage) {
  std::lock_guard<std::mutex> lock(SidesMutex());
  Side *&side = Sides()[storage];
  if (side == nullptr) side = new Side;
  return side;
}

// Drops the side table of a storage that is gone, and with it its hold on the store (closed when
// no other storage holds it), outside the table's lock.
void ForgetStorage(const void *storage) {
  Side *gone = nullptr;
  {
    std::lock_guard<std::mutex> lock(SidesMutex());
    std::map<const void *, Side *>::iterator it = Sides().find(storage);
    if (it == Sides().end()) return;
    gone = it->second;
    Sides().erase(it);
  }
  ReleaseStore(gone->store);
  delete gone;
}

// The value of key in the store, or false when it has none (removed since, or failed its
// checksum when read).
bool GetFromStore(OpenStore *store, const std::string &key, mace_storage::Value *out) {
  std::lock_guard<std::mutex> lock(store->mutex);
  return store->storage.Get(key, out) == MACE_STORAGE_OK;
}

// A buffer for mace_storage_get_into: the vector ctx points to, resized to the value's length.
uint8_t *ResizeVector(void *ctx, size_t len) {
  std::vector<unsigned char> *out = static_cast<std::vector<unsigned char> *>(ctx);
  out->resize(len);
  return out->data();
}

// Reads the value of key in the store straight into *out, verified there, without the store
// keeping a copy; false when it has none (removed since, or failed its checksum when read: *out
// then holds garbage).
bool GetIntoFromStore(OpenStore *store, const std::string &key, std::vector<unsigned char> *out) {
  std::lock_guard<std::mutex> lock(store->mutex);
  const uint8_t *k = reinterpret_cast<const uint8_t *>(key.data());
  return mace_storage_get_into(store->storage.handle(), k, key.size(), ResizeVector, out) ==
         MACE_STORAGE_OK;
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
    ForgetStorage(storage);
    delete storage;
  }
};

}  // namespace

// Counts the drop-in's failed flushes (declared in mace_storage_dropin.h).
extern "C" uint64_t mace_storage_dropin_flush_failures(void) { return g_flush_failures.load(); }

// The counters of the store the drop-in keeps open for path (declared in mace_storage_dropin.h).
extern "C" MaceStorageStatus mace_storage_dropin_stats(const char *path, MaceStorageStats *out) {
  if (path == nullptr || out == nullptr) return MACE_STORAGE_INVALID_ARGUMENT;
  std::lock_guard<std::mutex> lock(RegistryMutex());
  std::map<std::string, OpenStore *>::iterator it = Registry().find(path);
  if (it == Registry().end()) return MACE_STORAGE_NOT_FOUND;
  return it->second->storage.Stats(out);
}

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
  // A storage freed by MACE's own destructor may have left its side table under this address.
  ForgetStorage(this);
}

int FileStorage::Load() {
  utils::WriteLock lock(&data_mutex_);
  if (loaded_) return 0;
  std::string error;
  OpenStore *store = AcquireStore(file_path_, false, &error);
  if (store == nullptr) {
    Warn("could not read the cache " + file_path_ + " (" + error +
         "): Load returned -1; MACE starts without the cached programs and builds them");
    return -1;
  }
  Side *side = SideOf(this);
  std::lock_guard<std::mutex> side_lock(side->mutex);
  if (side->store == nullptr) {
    side->store = store;
  } else {
    ReleaseStore(store);  // a Flush opened it already: the same store
    store = side->store;
  }
  // No copy: Find copies the values MACE asks for. Keys already in data_ keep their value (it is
  // the newer one), and after a Clear the file's entries are gone for this storage.
  side->from_store = !side->changes.cleared;
  loaded_ = true;
  return 0;
}

bool FileStorage::Clear() {
  utils::WriteLock lock(&data_mutex_);
  mace_storage_guard_end(file_path_.c_str());
  data_.clear();
  data_changed_ = true;
  Side *side = SideOf(this);
  std::lock_guard<std::mutex> side_lock(side->mutex);
  side->changes.cleared = true;
  side->changes.keys.clear();
  side->from_store = false;
  side->missed.clear();
  return true;
}

bool FileStorage::Insert(const std::string &key, const std::vector<unsigned char> &value) {
  utils::WriteLock lock(&data_mutex_);
  // The driver returned from the binary Find gave last: MACE inserts after building.
  mace_storage_guard_end(file_path_.c_str());
  Side *side = SideOf(this);
  std::lock_guard<std::mutex> side_lock(side->mutex);
  // MACE re-inserts the same device and platform values on every run: no change, no flush.
  Entries::iterator it = data_.find(key);
  if (it != data_.end()) {
    if (it->second == value) return true;
  } else if (side->store != nullptr && side->from_store && side->missed.erase(key) == 0) {
    mace_storage::Value stored;
    if (GetFromStore(side->store, key, &stored) && stored.size() == value.size() &&
        (value.empty() || memcmp(stored.data(), &value[0], value.size()) == 0)) {
      return true;
    }
  }
  data_[key] = value;
  data_changed_ = true;
  side->changes.keys.insert(key);
  return true;
}

const std::vector<unsigned char> *FileStorage::Find(const std::string &key) {
  utils::ReadLock lock(&data_mutex_);
  Side *side = SideOf(this);
  const std::vector<unsigned char> *found = nullptr;
  {
    std::lock_guard<std::mutex> side_lock(side->mutex);
    Entries::const_iterator it = data_.find(key);
    if (it != data_.end()) {
      found = &it->second;
    } else if (side->store != nullptr && side->from_store) {
      // First use: read from the file straight into the vector MACE gets, verified there, and
      // moved into a node of its own (std::map insertion moves no other element, so the pointers
      // MACE holds stay valid); the store keeps no copy. A value that is gone or fails its
      // checksum leaves no entry.
      std::vector<unsigned char> value;
      if (GetIntoFromStore(side->store, key, &value)) {
        found = &data_.insert(std::make_pair(key, std::move(value))).first->second;
      } else {
        side->missed.insert(key);
      }
    }
  }
  // MACE builds one program at a time: a new Find means the driver returned from the last one.
  if (found != nullptr && IsProgramBinary(key)) {
    mace_storage_guard_mark(file_path_.c_str(), reinterpret_cast<const uint8_t *>(key.data()),
                            key.size());
  } else {
    mace_storage_guard_end(file_path_.c_str());
  }
  return found;
}

int FileStorage::Flush() {
  // Exclusive: the flush reads data_ and clears data_changed_, and two flushes must not interleave.
  utils::WriteLock lock(&data_mutex_);
  mace_storage_guard_end(file_path_.c_str());
  if (!data_changed_) return 0;
  Side *side = SideOf(this);
  std::lock_guard<std::mutex> side_lock(side->mutex);
  std::string error;
  if (side->store == nullptr) {
    // Load failed or was never called: open the store now (Load would have logged its findings).
    side->store = AcquireStore(file_path_, true, &error);
  }
  MaceStorageStatus status = MACE_STORAGE_IO_ERROR;
  if (side->store != nullptr) {
    std::lock_guard<std::mutex> store_lock(side->store->mutex);
    mace_storage::Storage &s = side->store->storage;
    status = ApplyChanges(&s, side->changes, data_);
    if (status == MACE_STORAGE_OK) status = s.Flush();
    if (status != MACE_STORAGE_OK) error = s.LastError();
  }
  if (status == MACE_STORAGE_OK) {
    data_changed_ = false;
    side->changes = Changes();
    return 0;
  }
  // MACE aborts the app when Flush returns -1 (a missing directory, no permission, a full disk):
  // losing the cache write costs one rebuild, an abort costs the app.
  ++g_flush_failures;
  Warn("could not save the cache " + file_path_ + " (" + error + "): " +
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
