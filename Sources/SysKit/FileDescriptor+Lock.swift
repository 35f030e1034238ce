import Glibc

extension FileDescriptor {
    /// Waits for an exclusive lock on the whole file (`lockf(F_LOCK)`, a POSIX record lock, so
    /// the descriptor must be open for writing). Released by `unlock()` or when the process
    /// closes any descriptor of the file.
    public func lockExclusive() throws {
        _ = try valueOrErrno("lockf") { Glibc.lockf(rawValue, F_LOCK, 0) }
    }

    public func unlock() { _ = Glibc.lockf(rawValue, F_ULOCK, 0) }
}
