// MACE's reader/writer lock interface (mace/utils/rwlock.h, v0.12 to v1.1), written for the tests so
// that the drop-in compiles exactly as it does inside MACE.
#ifndef MACE_UTILS_RWLOCK_H_
#define MACE_UTILS_RWLOCK_H_

#include <condition_variable>
#include <mutex>

namespace mace {
namespace utils {

// Many readers or one writer; a waiting writer holds off new readers so it cannot starve.
class RWMutex {
 public:
  RWMutex() : readers_(0), writer_(false), waiting_writers_(0) {}
  RWMutex(const RWMutex &) = delete;
  RWMutex &operator=(const RWMutex &) = delete;

  // Blocks until no writer holds or waits for the lock, then shares it.
  void LockShared() {
    std::unique_lock<std::mutex> lock(mutex_);
    cond_.wait(lock, [this] { return !writer_ && waiting_writers_ == 0; });
    ++readers_;
  }

  // Releases a shared hold.
  void UnlockShared() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--readers_ == 0) cond_.notify_all();
  }

  // Blocks until nobody holds the lock, then holds it alone.
  void Lock() {
    std::unique_lock<std::mutex> lock(mutex_);
    ++waiting_writers_;
    cond_.wait(lock, [this] { return !writer_ && readers_ == 0; });
    --waiting_writers_;
    writer_ = true;
  }

  // Releases the exclusive hold.
  void Unlock() {
    std::lock_guard<std::mutex> lock(mutex_);
    writer_ = false;
    cond_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cond_;
  int readers_;
  bool writer_;
  int waiting_writers_;
};

// Holds *rw_mutex shared for its lifetime.
class ReadLock {
 public:
  explicit ReadLock(RWMutex *rw_mutex) : rw_mutex_(rw_mutex) { rw_mutex_->LockShared(); }
  ~ReadLock() { rw_mutex_->UnlockShared(); }
  ReadLock(const ReadLock &) = delete;
  ReadLock &operator=(const ReadLock &) = delete;

 private:
  RWMutex *rw_mutex_;
};

// Holds *rw_mutex exclusively for its lifetime.
class WriteLock {
 public:
  explicit WriteLock(RWMutex *rw_mutex) : rw_mutex_(rw_mutex) { rw_mutex_->Lock(); }
  ~WriteLock() { rw_mutex_->Unlock(); }
  WriteLock(const WriteLock &) = delete;
  WriteLock &operator=(const WriteLock &) = delete;

 private:
  RWMutex *rw_mutex_;
};

}  // namespace utils
}  // namespace mace

#endif  // MACE_UTILS_RWLOCK_H_
