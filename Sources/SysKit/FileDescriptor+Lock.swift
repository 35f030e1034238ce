import CKernels
import Glibc

extension FileDescriptor {
    /// Waits for an exclusive lock on the whole file (`lockf(F_LOCK)`, a POSIX record lock, so
    /// the descriptor must be open for writing). Released by `unlock()` or when the process
    /// closes any descriptor of the file.
    public func lockExclusive() throws {
        _ = try valueOrErrno("lockf") { Glibc.lockf(rawValue, F_LOCK, 0) }
    }

    public func unlock() { _ = Glibc.lockf(rawValue, F_ULOCK, 0) }

    /// Waits for an exclusive `flock(2)` on this open file; released when it is closed. flock,
    /// not fcntl locks: it also excludes other open files of the same process (threads).
    public func flockExclusive(path: String = "") throws {
        while envmount_flock_exclusive(rawValue) != 0 {
            guard errno == EINTR else { throw SystemError(errno: errno, call: "flock", path: path) }
        }
    }
}
