//! OpenCL, loaded at run time with `dlopen` as MACE does, never linked: the archive links on machines
//! without OpenCL, and a missing library is a status, not a load failure. Handles come from the
//! caller through the C ABI; `from_raw` is where the caller's promise that they are valid is taken.

use opencl_sys::cl_function_types as f;
use opencl_sys::*;
use std::ffi::{c_char, c_void, CString};
use std::ptr;

/// Where MACE looks for the OpenCL library (desktop, then Android system and vendor paths).
pub const DEFAULT_LIBRARIES: &[&str] = &[
    "libOpenCL.so",
    "libOpenCL.so.1",
    "/system/vendor/lib64/libOpenCL.so",
    "/system/lib64/libOpenCL.so",
    "/system/vendor/lib/libOpenCL.so",
    "/system/lib/libOpenCL.so",
    "/vendor/lib64/libOpenCL.so",
    "/vendor/lib/libOpenCL.so",
    "/system/vendor/lib64/egl/libGLES_mali.so",
    "/system/vendor/lib/egl/libGLES_mali.so",
    "/vendor/lib64/egl/libGLES_mali.so",
    "/vendor/lib/egl/libGLES_mali.so",
    "/system/vendor/lib64/libPVROCL.so",
    "/system/vendor/lib/libPVROCL.so",
];

/// A loaded OpenCL library and the entry points the cache uses.
pub struct OpenCl {
    handle: *mut c_void,
    /// The library that was loaded.
    pub library: String,
    get_platform_ids: f::clGetPlatformIDs_t,
    get_platform_info: f::clGetPlatformInfo_t,
    get_device_ids: f::clGetDeviceIDs_t,
    get_device_info: f::clGetDeviceInfo_t,
    create_context: f::clCreateContext_t,
    release_context: f::clReleaseContext_t,
    create_with_source: f::clCreateProgramWithSource_t,
    create_with_binary: f::clCreateProgramWithBinary_t,
    build: f::clBuildProgram_t,
    get_program_info: f::clGetProgramInfo_t,
    get_build_info: f::clGetProgramBuildInfo_t,
    release_program: f::clReleaseProgram_t,
}

// SAFETY: OpenCL entry points are thread-safe (except clSetKernelArg, which is not used); the
// library handle is only closed on drop.
unsafe impl Send for OpenCl {}
// SAFETY: as above.
unsafe impl Sync for OpenCl {}

impl Drop for OpenCl {
    fn drop(&mut self) {
        // Never dlclose: drivers register atexit handlers and thread-local state that outlive us.
        let _ = self.handle;
    }
}

/// A device handle from the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Device(cl_device_id);
/// A context handle from the caller.
#[derive(Clone, Copy, Debug)]
pub struct Context(cl_context);
/// A program created here: released with [`OpenCl::release`] or handed to the caller.
#[derive(Debug)]
pub struct Program(cl_program);

// SAFETY: OpenCL objects other than kernels may be used from any thread (OpenCL 1.1+, appendix A.2).
unsafe impl Send for Device {}
// SAFETY: as above.
unsafe impl Sync for Device {}
// SAFETY: as above.
unsafe impl Send for Context {}
// SAFETY: as above.
unsafe impl Sync for Context {}

impl Device {
    /// Wraps a caller's device.
    ///
    /// # Safety
    /// `d` is a valid `cl_device_id` of the library in use, for as long as the wrapper is used.
    pub unsafe fn from_raw(d: *mut c_void) -> Self {
        Device(d)
    }

    /// The raw handle, used as an identity.
    pub fn raw(self) -> usize {
        self.0 as usize
    }
}

impl Context {
    /// Wraps a caller's context.
    ///
    /// # Safety
    /// `c` is a valid `cl_context` of the library in use, for as long as the wrapper is used.
    pub unsafe fn from_raw(c: *mut c_void) -> Self {
        Context(c)
    }
}

impl Program {
    /// Hands the program to the caller, who releases it.
    pub fn into_raw(self) -> *mut c_void {
        self.0
    }
}

fn sym<T>(handle: *mut c_void, name: &str) -> Option<T> {
    let c = CString::new(name).ok()?;
    // SAFETY: `handle` is a live dlopen handle and `c` a NUL-terminated name.
    let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
    if p.is_null() {
        return None;
    }
    debug_assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: T is an `Option<extern fn>` of pointer size, and `p` is the entry point of that name,
    // whose signature the OpenCL specification fixes.
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

/// An OpenCL error code with the call that returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClError {
    /// The call.
    pub call: &'static str,
    /// The `cl_int` it returned.
    pub code: i32,
}

impl std::fmt::Display for ClError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} returned {}", self.call, self.code)
    }
}

fn check(call: &'static str, code: cl_int) -> Result<(), ClError> {
    if code == CL_SUCCESS {
        Ok(())
    } else {
        Err(ClError { call, code })
    }
}

macro_rules! entry {
    ($self:ident . $f:ident) => {
        $self.$f.ok_or(ClError {
            call: stringify!($f),
            code: CL_INVALID_OPERATION,
        })?
    };
}

impl OpenCl {
    /// Loads the first library of `candidates` that has every entry point needed.
    pub fn load(candidates: &[&str]) -> Result<OpenCl, String> {
        let mut tried = Vec::new();
        for name in candidates {
            let Ok(c) = CString::new(*name) else { continue };
            // SAFETY: `c` is a NUL-terminated path; dlopen has no other precondition.
            let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if handle.is_null() {
                tried.push(*name);
                continue;
            }
            let cl = OpenCl {
                handle,
                library: name.to_string(),
                get_platform_ids: sym(handle, "clGetPlatformIDs"),
                get_platform_info: sym(handle, "clGetPlatformInfo"),
                get_device_ids: sym(handle, "clGetDeviceIDs"),
                get_device_info: sym(handle, "clGetDeviceInfo"),
                create_context: sym(handle, "clCreateContext"),
                release_context: sym(handle, "clReleaseContext"),
                create_with_source: sym(handle, "clCreateProgramWithSource"),
                create_with_binary: sym(handle, "clCreateProgramWithBinary"),
                build: sym(handle, "clBuildProgram"),
                get_program_info: sym(handle, "clGetProgramInfo"),
                get_build_info: sym(handle, "clGetProgramBuildInfo"),
                release_program: sym(handle, "clReleaseProgram"),
            };
            if cl.get_device_info.is_some()
                && cl.create_with_binary.is_some()
                && cl.create_with_source.is_some()
                && cl.build.is_some()
                && cl.get_program_info.is_some()
            {
                return Ok(cl);
            }
            tried.push(*name);
        }
        Err(format!(
            "no usable OpenCL library (tried {})",
            tried.join(", ")
        ))
    }

    /// A device's string property (name, version, driver version).
    pub fn device_string(&self, d: Device, param: cl_device_info) -> Result<String, ClError> {
        let get = entry!(self.get_device_info);
        let mut n: usize = 0;
        // SAFETY: `d` is valid (Device::from_raw's contract); querying the size writes only `n`.
        check("clGetDeviceInfo", unsafe {
            get(d.0, param, 0, ptr::null_mut(), &mut n)
        })?;
        let mut buf = vec![0u8; n];
        // SAFETY: `buf` has the `n` bytes the driver asked for.
        check("clGetDeviceInfo", unsafe {
            get(d.0, param, n, buf.as_mut_ptr().cast(), ptr::null_mut())
        })?;
        Ok(c_string(buf))
    }

    /// A property of the platform a device belongs to (name, profile, version).
    pub fn platform_string(&self, d: Device, param: cl_platform_info) -> Result<String, ClError> {
        let get_dev = entry!(self.get_device_info);
        let get = entry!(self.get_platform_info);
        let mut p: cl_platform_id = ptr::null_mut();
        // SAFETY: `d` is valid; the result is one pointer-sized handle written into `p`.
        check("clGetDeviceInfo", unsafe {
            get_dev(
                d.0,
                CL_DEVICE_PLATFORM,
                std::mem::size_of::<cl_platform_id>(),
                (&mut p as *mut cl_platform_id).cast(),
                ptr::null_mut(),
            )
        })?;
        let mut n: usize = 0;
        // SAFETY: `p` is the device's platform; querying the size writes only `n`.
        check("clGetPlatformInfo", unsafe {
            get(p, param, 0, ptr::null_mut(), &mut n)
        })?;
        let mut buf = vec![0u8; n];
        // SAFETY: `buf` has the `n` bytes the driver asked for.
        check("clGetPlatformInfo", unsafe {
            get(p, param, n, buf.as_mut_ptr().cast(), ptr::null_mut())
        })?;
        Ok(c_string(buf))
    }

    /// Creates a program from a binary and builds it: the step where a bad binary crashes a driver.
    pub fn build_from_binary(
        &self,
        c: Context,
        d: Device,
        binary: &[u8],
        options: &str,
    ) -> Result<Program, ClError> {
        let create = entry!(self.create_with_binary);
        let len = binary.len();
        let mut bin = binary.as_ptr();
        let (mut status, mut err) = (CL_SUCCESS, CL_SUCCESS);
        // SAFETY: one device, one binary of `len` readable bytes; outputs are valid locals.
        let p = unsafe { create(c.0, 1, &d.0, &len, &mut bin, &mut status, &mut err) };
        check("clCreateProgramWithBinary", err)?;
        let program = Program(p);
        let built = check("clCreateProgramWithBinary (binary status)", status)
            .and_then(|()| self.build_program(&program, d, options));
        match built {
            Ok(()) => Ok(program),
            Err(e) => {
                self.release(program);
                Err(e)
            }
        }
    }

    /// Creates a program from source and builds it; on a build failure, the error carries the log.
    pub fn build_from_source(
        &self,
        c: Context,
        d: Device,
        source: &[u8],
        options: &str,
    ) -> Result<Program, (ClError, String)> {
        let create = self.create_with_source.ok_or((
            ClError {
                call: "clCreateProgramWithSource",
                code: CL_INVALID_OPERATION,
            },
            String::new(),
        ))?;
        let len = source.len();
        let mut src = source.as_ptr() as *const c_char;
        let mut err = CL_SUCCESS;
        // SAFETY: one source string of `len` bytes (no NUL needed when a length is given).
        let p = unsafe { create(c.0, 1, &mut src, &len, &mut err) };
        check("clCreateProgramWithSource", err).map_err(|e| (e, String::new()))?;
        let program = Program(p);
        match self.build_program(&program, d, options) {
            Ok(()) => Ok(program),
            Err(e) => {
                let log = self.build_log(&program, d);
                self.release(program);
                Err((e, log))
            }
        }
    }

    fn build_program(&self, p: &Program, d: Device, options: &str) -> Result<(), ClError> {
        let build = entry!(self.build);
        let opts = CString::new(options.replace('\0', " ")).unwrap_or_default();
        // SAFETY: `p` is a live program, one valid device, a NUL-terminated option string, no callback.
        check("clBuildProgram", unsafe {
            build(p.0, 1, &d.0, opts.as_ptr(), None, ptr::null_mut())
        })
    }

    fn build_log(&self, p: &Program, d: Device) -> String {
        let Some(get) = self.get_build_info else {
            return String::new();
        };
        let mut n: usize = 0;
        // SAFETY: live program and device; the size query writes only `n`.
        if unsafe { get(p.0, d.0, CL_PROGRAM_BUILD_LOG, 0, ptr::null_mut(), &mut n) } != CL_SUCCESS
        {
            return String::new();
        }
        let mut buf = vec![0u8; n];
        // SAFETY: `buf` has the `n` bytes the driver asked for.
        unsafe {
            get(
                p.0,
                d.0,
                CL_PROGRAM_BUILD_LOG,
                n,
                buf.as_mut_ptr().cast(),
                ptr::null_mut(),
            )
        };
        c_string(buf)
    }

    /// The binary of a program built for one device.
    pub fn binary(&self, p: &Program) -> Result<Vec<u8>, ClError> {
        let get = entry!(self.get_program_info);
        let mut size: usize = 0;
        // SAFETY: a program built for one device has one binary size.
        check("clGetProgramInfo", unsafe {
            get(
                p.0,
                CL_PROGRAM_BINARY_SIZES,
                std::mem::size_of::<usize>(),
                (&mut size as *mut usize).cast(),
                ptr::null_mut(),
            )
        })?;
        let mut buf = vec![0u8; size];
        let mut out = buf.as_mut_ptr();
        // SAFETY: CL_PROGRAM_BINARIES takes an array of one pointer to `size` writable bytes.
        check("clGetProgramInfo", unsafe {
            get(
                p.0,
                CL_PROGRAM_BINARIES,
                std::mem::size_of::<*mut u8>(),
                (&mut out as *mut *mut u8).cast(),
                ptr::null_mut(),
            )
        })?;
        Ok(buf)
    }

    /// Releases a program.
    pub fn release(&self, p: Program) {
        if let Some(release) = self.release_program {
            // SAFETY: `p` is a live program owned here, released once.
            unsafe { release(p.0) };
        }
    }

    /// The first device of the first platform, and a context on it (for tools, tests and benchmarks).
    pub fn first_device(&self) -> Result<(Context, Device), ClError> {
        let get_p = entry!(self.get_platform_ids);
        let get_d = entry!(self.get_device_ids);
        let create = entry!(self.create_context);
        let mut platform: cl_platform_id = ptr::null_mut();
        let mut n: cl_uint = 0;
        // SAFETY: room for one platform id and the count.
        check("clGetPlatformIDs", unsafe {
            get_p(1, &mut platform, &mut n)
        })?;
        let mut dev: cl_device_id = ptr::null_mut();
        // SAFETY: room for one device id.
        check("clGetDeviceIDs", unsafe {
            get_d(platform, CL_DEVICE_TYPE_ALL, 1, &mut dev, &mut n)
        })?;
        let mut err = CL_SUCCESS;
        // SAFETY: one valid device, no properties, no callback.
        let ctx = unsafe { create(ptr::null(), 1, &dev, None, ptr::null_mut(), &mut err) };
        check("clCreateContext", err)?;
        Ok((Context(ctx), Device(dev)))
    }

    /// Releases a context from `first_device`.
    pub fn release_context(&self, c: Context) {
        if let Some(release) = self.release_context {
            // SAFETY: a live context, released once by its owner.
            unsafe { release(c.0) };
        }
    }
}

/// A C string from a driver buffer (stops at the first NUL).
fn c_string(mut buf: Vec<u8>) -> String {
    if let Some(n) = buf.iter().position(|&b| b == 0) {
        buf.truncate(n);
    }
    String::from_utf8_lossy(&buf).into_owned()
}
