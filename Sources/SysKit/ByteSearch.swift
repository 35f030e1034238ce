import Glibc
import CKernels

/// Byte-string search over arrays with glibc's `memmem`/`memchr` (vectorised), for the publish
/// scan that looks for the source path in every file.
public enum ByteSearch {
    /// Offsets of every non-overlapping occurrence of `needle` in `buffer[range]`, in order.
    public static func occurrences(of needle: [UInt8], in buffer: [UInt8], range: Range<Int>) -> [Int] {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.count)
        guard !needle.isEmpty, range.count >= needle.count else { return [] }
        var found: [Int] = []
        // SAFETY: every pointer stays inside `buffer[range]` and `needle`, both checked above;
        // memmem reads at most `hay` bytes from `start`.
        buffer.withUnsafeBytes { buf in
            needle.withUnsafeBytes { nd in
                let base = buf.baseAddress!
                var pos = range.lowerBound
                while range.upperBound - pos >= needle.count {
                    guard let hit = envmount_memmem(base + pos, range.upperBound - pos, nd.baseAddress!, needle.count) else { break }
                    let at = base.distance(to: UnsafeRawPointer(hit))
                    found.append(at)
                    pos = at + needle.count
                }
            }
        }
        return found
    }

    /// The first offset of `byte` in `buffer[range]`, or nil.
    public static func firstIndex(of byte: UInt8, in buffer: [UInt8], range: Range<Int>) -> Int? {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.count)
        guard !range.isEmpty else { return nil }
        // SAFETY: memchr reads `range.count` bytes from inside the buffer (range checked above).
        return buffer.withUnsafeBytes { buf -> Int? in
            let base = buf.baseAddress!
            guard let hit = memchr(base + range.lowerBound, Int32(byte), range.count) else { return nil }
            return base.distance(to: UnsafeRawPointer(hit))
        }
    }
}

/// Facts about the running system that the preflight compares an environment with.
public enum SystemInfo {
    /// This machine's glibc version, e.g. "2.36" (the corresponding C function is `gnu_get_libc_version`).
    public static func glibcVersion() -> String {
        // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
        String(cString: envmount_glibc_version())
    }

    /// The kernel's machine name (`uname -m`), e.g. "x86_64".
    public static func machine() -> String {
        var u = utsname()
        uname(&u)
        // SAFETY: utsname.machine is a NUL-terminated fixed-size array inside `u`.
        return withUnsafeBytes(of: &u.machine) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}
