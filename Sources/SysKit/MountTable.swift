/// The kernel's view of mount points, from /proc/self/mountinfo, read with the standard library
/// only: envpublish (which links no Foundation) needs it to recognize a writable envmount mount,
/// and envmount's `Mountpoints` reads it through here too.
public enum MountTable {
    public struct Entry: Sendable, Equatable {
        public var mountpoint: String
        /// The kernel's id of this mount (mountinfo's first field): a new mount at the same
        /// path gets a new one.
        public var id: Int = 0
        public var fsType: String
        public var source: String
        /// The file system's own options (for overlayfs: lowerdir, upperdir, workdir).
        public var superOptions: String

        public init(mountpoint: String, fsType: String, source: String, superOptions: String = "") {
            self.mountpoint = mountpoint; self.fsType = fsType; self.source = source; self.superOptions = superOptions
        }

        /// The value of a `key=value` file system option (`upperdir` of an overlay), if present.
        public func superOption(_ key: String) -> String? {
            for opt in superOptions.split(separator: ",") where opt.hasPrefix(key + "=") {
                return String(opt.dropFirst(key.count + 1))
            }
            return nil
        }
    }

    public static func entries() -> [Entry] {
        guard let data = try? FS.readFile("/proc/self/mountinfo") else { return [] }
        return parse(String(decoding: data, as: UTF8.self))
    }

    /// The topmost mount on `path` (a resolved path, as mountinfo spells it).
    public static func find(_ path: String) -> Entry? { entries().last { $0.mountpoint == path } }

    /// mountinfo lines: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`.
    public static func parse(_ text: String) -> [Entry] {
        var out: [Entry] = []
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: false)
            guard let dash = f.firstIndex(of: "-"), dash >= 6, f.count >= dash + 3 else { continue }
            var e = Entry(mountpoint: unescape(String(f[4])), fsType: String(f[dash + 1]), source: unescape(String(f[dash + 2])),
                          superOptions: f.count > dash + 3 ? unescape(String(f[dash + 3])) : "")
            e.id = Int(f[0]) ?? 0
            out.append(e)
        }
        return out
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
}
