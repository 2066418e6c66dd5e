//! `augeas.version` (legacy `augeasversion`), as Facter reads it: Facter
//! asks its Ruby binding of libaugeas for `/augeas/version`; the agent asks
//! libaugeas itself, loaded only when the fact is named (`dlopen`, no
//! command, no lenses loaded). No libaugeas on the machine: no fact, as
//! with Facter.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

/// `AUG_NO_MODL_AUTOLOAD`: no lens is loaded, no file read.
const AUG_NO_MODL_AUTOLOAD: c_uint = 1 << 6;

type Init = unsafe extern "C" fn(*const c_char, *const c_char, c_uint) -> *mut c_void;
type Get = unsafe extern "C" fn(*const c_void, *const c_char, *mut *const c_char) -> c_int;
type Close = unsafe extern "C" fn(*mut c_void);

/// The version libaugeas reports, if the library is installed.
pub(crate) fn version() -> Option<String> {
    // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast
    // to the signature augeas.h declares for it; the handle from aug_init
    // is used only before aug_close, and the value aug_get points to is
    // copied out before that; the library is closed last.
    unsafe {
        let lib = libc::dlopen(
            c"libaugeas.so.0".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        );
        if lib.is_null() {
            return None;
        }
        let sym = |name: &CStr| libc::dlsym(lib, name.as_ptr());
        let (init, get, close) = (sym(c"aug_init"), sym(c"aug_get"), sym(c"aug_close"));
        let mut out = None;
        if !init.is_null() && !get.is_null() && !close.is_null() {
            let init: Init = std::mem::transmute::<*mut c_void, Init>(init);
            let get: Get = std::mem::transmute::<*mut c_void, Get>(get);
            let close: Close = std::mem::transmute::<*mut c_void, Close>(close);
            let aug = init(c"/".as_ptr(), std::ptr::null(), AUG_NO_MODL_AUTOLOAD);
            if !aug.is_null() {
                let mut value: *const c_char = std::ptr::null();
                if get(aug, c"/augeas/version".as_ptr(), &mut value) == 1 && !value.is_null() {
                    out = Some(CStr::from_ptr(value).to_string_lossy().into_owned());
                }
                close(aug);
            }
        }
        libc::dlclose(lib);
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_when_libaugeas_is_installed() {
        let installed = std::path::Path::new("/usr/lib/x86_64-linux-gnu/libaugeas.so.0").exists()
            || std::path::Path::new("/usr/lib64/libaugeas.so.0").exists();
        let v = super::version();
        assert_eq!(v.is_some(), installed, "{v:?}");
        if let Some(v) = v {
            assert!(v.split('.').all(|p| p.parse::<u32>().is_ok()), "{v}");
        }
    }
}
