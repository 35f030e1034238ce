// What the publish scan needs from an ELF file, read in pure Swift through a bounded reader:
// the machine, RPATH/RUNPATH strings with their file offsets (so they can be rewritten in
// place), and the newest GLIBC_x.y version it requires.

public struct ElfInfo: Sendable, Equatable {
    public struct RunPath: Sendable, Equatable {
        /// File offset of the string in the dynamic string table.
        public var offset: UInt64
        public var value: [UInt8]
    }

    public var machine: UInt16
    public var is64: Bool
    public var runPaths: [RunPath] = []
    /// Highest GLIBC_x.y in the version-needed section, as (x, y).
    public var glibc: (Int, Int)? = nil

    public static func == (a: ElfInfo, b: ElfInfo) -> Bool {
        a.machine == b.machine && a.is64 == b.is64 && a.runPaths == b.runPaths && a.glibc?.0 == b.glibc?.0 && a.glibc?.1 == b.glibc?.1
    }

    public var machineName: String { Self.machineName(machine) }

    public static func machineName(_ m: UInt16) -> String {
        switch m {
        case 3: return "i386"
        case 40: return "arm"
        case 62: return "x86_64"
        case 183: return "aarch64"
        case 21: return "ppc64"
        case 22: return "s390x"
        case 243: return "riscv64"
        default: return "elf-machine-\(m)"
        }
    }

    public static func isElf(_ head: some Collection<UInt8>) -> Bool {
        head.starts(with: [0x7f, 0x45, 0x4c, 0x46])
    }

    public typealias Reader = (_ offset: UInt64, _ count: Int) throws -> [UInt8]

    /// Parses the parts named above; throws FormatError on anything out of range.
    public static func parse(size: UInt64, read: Reader) throws -> ElfInfo {
        func get(_ off: UInt64, _ n: Int) throws -> [UInt8] {
            guard off <= size, UInt64(n) <= size - off else { throw FormatError("ELF: read of \(n) bytes at \(off) passes the end") }
            let b = try read(off, n)
            guard b.count == n else { throw FormatError("ELF: short read at \(off)") }
            return b
        }
        let id = try get(0, 64 <= size ? 64 : 52)
        guard isElf(id) else { throw FormatError("not an ELF file") }
        let is64: Bool
        switch id[4] { case 1: is64 = false; case 2: is64 = true; default: throw FormatError("ELF: bad class") }
        let le: Bool
        switch id[5] { case 1: le = true; case 2: le = false; default: throw FormatError("ELF: bad data encoding") }
        func num(_ b: [UInt8], _ at: Int, _ n: Int) -> UInt64 {
            var v: UInt64 = 0
            for k in 0..<n { v |= UInt64(b[at + k]) << (8 * UInt64(le ? k : n - 1 - k)) }
            return v
        }
        let word = is64 ? 8 : 4
        var info = ElfInfo(machine: UInt16(num(id, 18, 2)), is64: is64)
        guard is64 ? id.count >= 64 : id.count >= 52 else { throw FormatError("ELF: short header") }
        let shoff = num(id, is64 ? 0x28 : 0x20, word)
        let shentsize = Int(num(id, is64 ? 0x3a : 0x2e, 2))
        let shnum = Int(num(id, is64 ? 0x3c : 0x30, 2))
        guard shoff != 0, shnum > 0 else { return info }
        guard shentsize >= (is64 ? 64 : 40) else { throw FormatError("ELF: bad section header size") }
        let table = try get(shoff, shentsize * shnum)
        struct Section { var type: UInt32; var offset: UInt64; var size: UInt64; var link: Int; var info: UInt64 }
        let sections = (0..<shnum).map { i -> Section in
            let b = i * shentsize
            return is64
                ? Section(type: UInt32(num(table, b + 4, 4)), offset: num(table, b + 24, 8), size: num(table, b + 32, 8),
                          link: Int(num(table, b + 40, 4)), info: num(table, b + 44, 4))
                : Section(type: UInt32(num(table, b + 4, 4)), offset: num(table, b + 16, 4), size: num(table, b + 20, 4),
                          link: Int(num(table, b + 24, 4)), info: num(table, b + 28, 4))
        }
        func string(_ strtab: Int, _ at: UInt64) throws -> (UInt64, [UInt8]) {
            guard strtab < sections.count else { throw FormatError("ELF: bad string table link") }
            let s = sections[strtab]
            guard at < s.size else { throw FormatError("ELF: string offset out of range") }
            let start = s.offset + at
            let n = Int(min(UInt64(4096), s.size - at, size - min(size, start)))
            let b = try get(start, n)
            guard let end = b.firstIndex(of: 0) else { throw FormatError("ELF: unterminated string") }
            return (start, Array(b[..<end]))
        }
        let maxSection: UInt64 = 16 << 20
        for s in sections where s.type == 6 && s.size > 0 && s.size <= maxSection {   // SHT_DYNAMIC
            let dyn = try get(s.offset, Int(s.size))
            var k = 0
            while k + 2 * word <= dyn.count {
                let tag = num(dyn, k, word), val = num(dyn, k + word, word)
                if tag == 0 { break }
                if tag == 15 || tag == 29 {   // DT_RPATH, DT_RUNPATH
                    let (off, v) = try string(s.link, val)
                    info.runPaths.append(RunPath(offset: off, value: v))
                }
                k += 2 * word
            }
        }
        for s in sections where s.type == 0x6fff_fffe && s.size > 0 && s.size <= maxSection {   // SHT_GNU_verneed
            let vn = try get(s.offset, Int(s.size))
            var at = 0
            for _ in 0..<min(Int(s.info), 4096) {
                guard at >= 0, at + 16 <= vn.count else { break }
                let cnt = Int(num(vn, at + 2, 2)), aux = Int(num(vn, at + 8, 4)), next = Int(num(vn, at + 12, 4))
                var a = at + aux
                for _ in 0..<min(cnt, 4096) {
                    guard a >= 0, a + 16 <= vn.count else { break }
                    let name = try string(s.link, num(vn, a + 8, 4)).1
                    if let v = glibcVersion(name), v > (info.glibc ?? (0, 0)) { info.glibc = v }
                    let an = Int(num(vn, a + 12, 4))
                    if an == 0 { break }
                    a += an
                }
                if next == 0 { break }
                at += next
            }
        }
        return info
    }

    /// (2, 34) from "GLIBC_2.34"; nil for other names (GLIBC_PRIVATE, GCC_3.0 …).
    public static func glibcVersion(_ name: [UInt8]) -> (Int, Int)? {
        let s = String(decoding: name, as: UTF8.self)
        guard s.hasPrefix("GLIBC_") else { return nil }
        let parts = s.dropFirst(6).split(separator: ".")
        guard parts.count >= 2, let a = Int(parts[0]), let b = Int(parts[1]) else { return nil }
        return (a, b)
    }
}
