import FoundationEssentials
import Glibc
import SysKit

/// The kernel's view of mount points, from /proc/self/mountinfo.
public enum Mountpoints {
    public typealias Entry = MountTable.Entry

    public static func all() -> [Entry] { MountTable.entries() }

    public static func find(_ path: String) -> Entry? { all().last { $0.mountpoint == path } }

    /// A mount point users address: an envmount FUSE mount, or the overlay of a writable or
    /// native one (not the FUSE mount hidden under it).
    public static func isEnvmountMount(_ e: Entry) -> Bool {
        (e.fsType == "fuse.envmount" && !e.source.hasPrefix(WritableLayer.lowerSourcePrefix)) || EnvOverlay.of(e) != nil
    }

    public static func unescape(_ s: String) -> String { MountTable.unescape(s) }

    /// Absolute form of a user's path without resolving the last component through a dead mount.
    public static func absolute(_ path: String) -> String {
        let p = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var parts: [Substring] = []
        for c in p.split(separator: "/") {
            if c == "." || c.isEmpty { continue }
            if c == ".." { _ = parts.popLast(); continue }
            parts.append(c)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// Runs `fusermount3 -u [-z] path`; returns its error output on failure.
    public static func fusermountUnmount(_ path: String, lazy: Bool) -> String? {
        let p: Subprocess.Child
        do { p = try Subprocess.start(["/bin/fusermount3"] + (lazy ? ["-u", "-z", path] : ["-u", path]), stderr: .pipe) } catch {
            return "cannot run fusermount3: \(error) (install the fuse3 package)"
        }
        let errFD = p.errorOutput!
        defer { errFD.close() }
        // Read to the end first: a fusermount3 that wrote more than a pipe holds would block.
        let said = (try? errFD.readAll()) ?? []
        if Subprocess.exitCode(waitStatus: p.waitForEnd()) == 0 { return nil }
        let msg = String(decoding: said, as: UTF8.self)
        return msg.trimmingWhitespace()
    }
}
