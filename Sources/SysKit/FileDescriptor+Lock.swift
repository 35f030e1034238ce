import CKernels
import Glibc

extension FileDescriptor {
    /// Waits for an exclusive `flock(2)` on this open file; released when it is closed. flock,
    /// not fcntl locks: it also excludes other open files of the same process (threads).
    public func lockExclusive(path: String = "") throws {
        while envmount_flock_exclusive(rawValue) != 0 {
            guard errno == EINTR else { throw SystemError(errno: errno, call: "flock", path: path) }
        }
    }
}
