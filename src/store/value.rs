//! Values handed out by the store: a shared buffer and a range, so a get copies nothing and a value
//! stays valid whatever happens to the store afterwards.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

/// Memory a [`Value`] can point into: a loaded file, an owned buffer, or caller memory.
pub type Backing = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// An immutable byte string sharing its memory with the buffer it was read from.
#[derive(Clone)]
pub struct Value {
    owner: Backing,
    range: Range<usize>,
}

impl Value {
    /// A value that owns `v`.
    pub fn from_vec(v: Vec<u8>) -> Self {
        let range = 0..v.len();
        Value {
            owner: Arc::new(v),
            range,
        }
    }

    /// A value holding a copy of `b`.
    pub fn copy_from(b: &[u8]) -> Self {
        Value::from_vec(b.to_vec())
    }

    /// A value viewing `range` of `owner`; `None` if the range is out of bounds.
    pub fn slice_of(owner: &Backing, range: Range<usize>) -> Option<Self> {
        let len = (**owner).as_ref().len();
        (range.start <= range.end && range.end <= len).then(|| Value {
            owner: owner.clone(),
            range,
        })
    }

    /// Whether both are the same view of the same memory (the same put), without comparing bytes.
    pub fn same(&self, other: &Value) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.owner), Arc::as_ptr(&other.owner))
            && self.range == other.range
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.range.clone()]
    }
}

impl Deref for Value {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Value {}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({} bytes)", self.range.len())
    }
}
