import Glibc
import CKernels

/// An owned-by-convention POSIX file descriptor; `close()` it when done.
public struct FileDescriptor: RawRepresentable, Sendable, Hashable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The corresponding C function is `open`; O_CLOEXEC is always added.
    public static func open(_ path: PathBytes, _ flags: Int32, mode: UInt32 = 0o644) throws -> FileDescriptor {
        let fd = try withCPath(path) { (p) throws -> Int32 in
            try valueOrErrno("open", path.pathString) { Glibc.open(p, flags | O_CLOEXEC, mode) }
        }
        return FileDescriptor(rawValue: fd)
    }

    public static func open(_ path: String, _ flags: Int32, mode: UInt32 = 0o644) throws -> FileDescriptor {
        try open(path.pathBytes, flags, mode: mode)
    }

    public func close() { _ = Glibc.close(rawValue) }

    /// Reads up to `count` bytes at `offset` into `buffer[at...]`; returns bytes read (0 at EOF).
    public func pread(into buffer: inout [UInt8], at index: Int, count: Int, offset: UInt64) throws -> Int {
        precondition(index >= 0 && count >= 0 && index + count <= buffer.count)
        if count == 0 { return 0 }
        // SAFETY: the range [index, index+count) was checked against the buffer above.
        return try buffer.withUnsafeMutableBytes { (raw) throws -> Int in
            try valueOrErrno("pread") { Glibc.pread(rawValue, raw.baseAddress! + index, count, off_t(offset)) }
        }
    }

    /// Reads exactly `count` bytes at `offset` (short only at end of file).
    public func preadFully(into buffer: inout [UInt8], at index: Int, count: Int, offset: UInt64) throws -> Int {
        var done = 0
        while done < count {
            let n = try pread(into: &buffer, at: index + done, count: count - done, offset: offset + UInt64(done))
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Reads `count` bytes at `offset` into a new array (shorter only at end of file).
    public func read(count: Int, offset: UInt64) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: count)
        let n = try preadFully(into: &buf, at: 0, count: count, offset: offset)
        if n < count { buf.removeLast(count - n) }
        return buf
    }

    /// Writes all of `bytes` at the current position.
    public func writeAll(_ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            // SAFETY: the pointer is used only inside the closure, within the array's bounds.
            let n = try bytes.withUnsafeBytes { (raw) throws -> Int in
                try valueOrErrno("write") { Glibc.write(rawValue, raw.baseAddress! + done, bytes.count - done) }
            }
            done += n
        }
    }

    /// Writes all of `bytes` at `offset` (the file position is unchanged).
    public func pwriteAll(_ bytes: [UInt8], at offset: UInt64) throws {
        var done = 0
        while done < bytes.count {
            // SAFETY: the pointer is used only inside the closure, within the array's bounds.
            let n = try bytes.withUnsafeBytes { (raw) throws -> Int in
                try valueOrErrno("pwrite") { Glibc.pwrite(rawValue, raw.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done)) }
            }
            done += n
        }
    }

    public func writeAll(_ s: String) throws { try writeAll(Array(s.utf8)) }

    /// Reads everything from the current position until end of file (a pipe too). A file that
    /// says its size (a regular file) is read into one buffer of that size plus one byte, so a
    /// file that did not grow is read with no copy: a mount reads its 0.9 MB manifest and 3.9 MB
    /// seal so, where growing an array by 64 KiB reads took 11 ms for the two, mostly copies
    /// and page faults. A file of size 0 (a pipe, /proc) or one that grew is read on in chunks
    /// of 64 KiB.
    public func readAll() throws -> [UInt8] {
        var st = Glibc.stat()
        let hint = Glibc.fstat(rawValue, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG ? max(0, Int(st.st_size)) : 0
        // A size of 0 is unknown, not empty: /proc's files say 0, and a sysctl file answers
        // only its first read (a second read at offset 1 of pid_max gave end of file), so they
        // get one read as large as the chunks below.
        var out = [UInt8](repeating: 0, count: hint > 0 ? hint + 1 : 65536)
        var have = 0
        while have < out.count {
            let n = try read(into: &out, at: have)
            if n == 0 { out.removeLast(out.count - have); return out }
            have += n
        }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try read(into: &chunk, at: 0)
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
        }
    }

    /// One read(2) into `buffer[index...]`, at the current position; bytes read (0 at end).
    private func read(into buffer: inout [UInt8], at index: Int) throws -> Int {
        precondition(index >= 0 && index < buffer.count)
        // SAFETY: the pointer is used only inside the closure, from `index` to the array's end.
        return try buffer.withUnsafeMutableBytes { (raw) throws -> Int in
            try valueOrErrno("read") { Glibc.read(rawValue, raw.baseAddress! + index, raw.count - index) }
        }
    }

    public func fsync() throws { _ = try valueOrErrno("fsync") { Glibc.fsync(rawValue) } }

    public func truncate(_ size: UInt64) throws {
        _ = try valueOrErrno("ftruncate") { Glibc.ftruncate(rawValue, off_t(size)) }
    }

    /// The next data region at or after `offset` (`SEEK_DATA`), or nil when only a hole remains.
    public func nextData(from offset: UInt64) throws -> UInt64? {
        let r = Glibc.lseek(rawValue, off_t(offset), envmount_seek_data())
        if r >= 0 { return UInt64(r) }
        if Glibc.errno == ENXIO { return nil }
        if Glibc.errno == EINVAL { return offset } // file system without SEEK_DATA: all data
        throw SystemError(errno: Glibc.errno, call: "lseek(envmount_seek_data())")
    }

    /// The next hole at or after `offset` (`SEEK_HOLE`); end of file counts as a hole.
    public func nextHole(from offset: UInt64, size: UInt64) throws -> UInt64 {
        let r = Glibc.lseek(rawValue, off_t(offset), envmount_seek_hole())
        if r >= 0 { return UInt64(r) }
        if Glibc.errno == EINVAL || Glibc.errno == ENXIO { return size }
        throw SystemError(errno: Glibc.errno, call: "lseek(envmount_seek_hole())")
    }

    /// Asks the kernel to start reading `[offset, offset+length)` into the page cache now
    /// (`posix_fadvise(POSIX_FADV_WILLNEED)`); length 0 means to the end.
    public func willNeed(offset: UInt64 = 0, length: UInt64 = 0) {
        _ = posix_fadvise(rawValue, off_t(offset), off_t(length), POSIX_FADV_WILLNEED)
    }

    /// Whether the page holding byte `offset` is in the page cache (asked without waiting on the
    /// disk); nil where the file system cannot say.
    public func isPageCached(at offset: UInt64) -> Bool? {
        switch envmount_page_cached(rawValue, offset) {
        case 1: return true
        case 0: return false
        default: return nil
        }
    }

    /// Drops this file's clean pages from the page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`).
    public func dropCachedPages() {
        _ = posix_fadvise(rawValue, 0, 0, POSIX_FADV_DONTNEED)
    }

    public func dup2(to target: Int32) throws {
        _ = try valueOrErrno("dup2") { Glibc.dup2(rawValue, target) }
    }
}
