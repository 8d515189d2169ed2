//! `execl`, `execlp` and `execle`: their arguments come as a variadic list, which glibc turns
//! into an array and hands to its *internal* execve, past our `execv`/`execvp`/`execve` hooks;
//! the new program would then inherit our reserved placeholder descriptors instead of the files.
//!
//! Stable Rust cannot define a variadic function, so each is a naked trampoline (x86-64 only;
//! elsewhere glibc's own functions stay in place). At entry the path is in `rdi`, the first five
//! list entries in `rsi`, `rdx`, `rcx`, `r8`, `r9`, and the rest on the stack just above the
//! return address. The trampoline takes the return address off, pushes the five registers so
//! that they sit right below the stack-passed entries (one contiguous, NULL-terminated array,
//! the envp of `execle` just after the NULL), calls [`exec_list`] with the array, and puts the
//! stack back as it found it. glibc bounds nothing here either: the list is the caller's to end.

use std::ffi::{c_char, c_int};

/// Which call an array came from.
const EXECL: c_int = 0;
const EXECLP: c_int = 1;
const EXECLE: c_int = 2;

/// Runs the exec a trampoline stands for, through our hooks (hand-over, then the real call).
///
/// # Safety
/// `path` and `list` as the C caller of `execl`/`execlp`/`execle` passed them: `list` a
/// NULL-terminated array of strings, followed by the environment for `execle`.
unsafe extern "C" fn exec_list(path: *const c_char, list: *const *const c_char, kind: c_int) -> c_int {
    match kind {
        // SAFETY: `path` and the NULL-terminated `list` are the caller's, as execv takes them.
        EXECL => unsafe { super::process::execv(path, list) },
        // SAFETY: `path` and the NULL-terminated `list` are the caller's, as execvp takes them.
        EXECLP => unsafe { super::process::execvp(path, list) },
        _ => {
            let mut end = 0;
            // SAFETY: the caller's list ends with a NULL, and `execle` passes the environment
            // right after it.
            let envp = unsafe {
                while !(*list.add(end)).is_null() {
                    end += 1;
                }
                *list.add(end + 1) as *const *const c_char
            };
            // SAFETY: `path`, the NULL-terminated `list` and the environment after it are the caller's, as execve takes them.
            unsafe { super::process::execve(path, list, envp) }
        }
    }
}

/// The trampoline of one variadic exec (`$kind`): see the module's comment. The stack stays
/// 16-byte aligned at the call: 8 at entry, 0 after the pop, 8 after five pushes, 0 after the
/// return address goes back on.
macro_rules! trampoline {
    ($name:ident, $kind:expr) => {
        #[no_mangle]
        #[unsafe(naked)]
        pub unsafe extern "C" fn $name(path: *const c_char, arg: *const c_char) -> c_int {
            core::arch::naked_asm!(
                "pop r10",
                "push r9",
                "push r8",
                "push rcx",
                "push rdx",
                "push rsi",
                "mov rsi, rsp",
                "push r10",
                "mov edx, {kind}",
                "call {run}",
                "pop r10",
                "add rsp, 40",
                "push r10",
                "ret",
                kind = const $kind,
                run = sym exec_list,
            )
        }
    };
}

trampoline!(execl, EXECL);
trampoline!(execlp, EXECLP);
trampoline!(execle, EXECLE);
