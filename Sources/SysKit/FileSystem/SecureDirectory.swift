// Directories that hold what a daemon trusts (control sockets, cached chunks) must belong to the
// user who runs it and be writable by nobody else: in a shared /tmp another user can create the
// directory first, and then plant files in it or replace a socket.
import Glibc

/// A directory refused because another user could change what is in it.
public struct InsecureDirectoryError: Error, CustomStringConvertible, Sendable, Equatable {
    public let path: String
    public let reason: String

    public var description: String {
        "refusing directory \(path): \(reason) (remove it, or fix its owner and mode: chown \(getuid()) and chmod 700)"
    }
}

public enum SecureDirectory {
    /// Creates `path` with `mode` (missing parents 0700), or checks the one that is there:
    /// it must be a directory owned by this process's user and not writable by group or others.
    /// The mode is set explicitly, so the umask does not widen or narrow it.
    public static func prepare(_ path: String, mode: UInt32 = 0o700) throws {
        let parent = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? ""
        if !parent.isEmpty && !FS.exists(parent) { try FS.makeDirectories(parent, mode: 0o700) }
        do {
            try FS.mkdir(path.pathBytes, mode: mode)
            try FS.chmod(path.pathBytes, mode)
        } catch let e as SystemError where e.errno == EEXIST {}
        try check(path)
    }

    /// Throws `InsecureDirectoryError` unless `path` (followed through symlinks) is a directory
    /// owned by this process's effective user and not writable by group or others.
    public static func check(_ path: String) throws {
        let st = try FS.stat(path)
        guard st.kind == .directory else { throw InsecureDirectoryError(path: path, reason: "it is not a directory") }
        let me = geteuid()
        guard st.uid == me else {
            throw InsecureDirectoryError(path: path, reason: "it is owned by uid \(st.uid), not by uid \(me) who runs envmount")
        }
        guard st.mode & 0o022 == 0 else {
            throw InsecureDirectoryError(path: path, reason: "it is writable by \(st.mode & 0o002 != 0 ? "other users" : "its group") (mode \(String(st.mode, radix: 8)))")
        }
    }
}
