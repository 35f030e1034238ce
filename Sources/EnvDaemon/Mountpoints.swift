import Foundation
import Glibc
import SysKit

/// The kernel's view of mount points, from /proc/self/mountinfo.
public enum Mountpoints {
    public struct Entry: Sendable {
        public var mountpoint: String
        public var fsType: String
        public var source: String
        /// The file system's own options (for overlayfs: lowerdir, upperdir, workdir).
        public var superOptions: String = ""
    }

    public static func all() -> [Entry] {
        guard let data = try? FS.readFile("/proc/self/mountinfo") else { return [] }
        var out: [Entry] = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { continue }
            let left = halves[0].split(separator: " "), right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 2 else { continue }
            out.append(Entry(mountpoint: unescape(String(left[4])), fsType: String(right[0]), source: unescape(String(right[1])),
                             superOptions: right.count > 2 ? unescape(String(right[2])) : ""))
        }
        return out
    }

    public static func find(_ path: String) -> Entry? { all().last { $0.mountpoint == path } }

    /// A mount point users address: an envmount FUSE mount, or the overlay of a writable or
    /// native one (not the FUSE mount hidden under it).
    public static func isEnvmountMount(_ e: Entry) -> Bool {
        (e.fsType == "fuse.envmount" && !e.source.hasPrefix(WritableLayer.lowerSourcePrefix)) || EnvOverlay.of(e) != nil
    }

    /// mountinfo writes space, tab, newline and backslash as \ooo.
    public static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count,
               let v = UInt8(String(decoding: b[i + 1...i + 3], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

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
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/fusermount3")
        p.arguments = lazy ? ["-u", "-z", path] : ["-u", path]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        do { try p.run() } catch { return "cannot run fusermount3: \(error) (install the fuse3 package)" }
        p.waitUntilExit()
        if p.terminationStatus == 0 { return nil }
        let msg = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return msg.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
