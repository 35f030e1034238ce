/// Little-endian writer for the binary formats.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { for k in 0..<2 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * k))) } }
    mutating func u32(_ v: UInt32) { for k in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * k))) } }
    mutating func u64(_ v: UInt64) { for k in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * k))) } }
    mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    mutating func raw(_ b: some Collection<UInt8>) { bytes.append(contentsOf: b) }
    mutating func blob(_ b: some Collection<UInt8>) { u32(UInt32(b.count)); raw(b) }
}

/// Bounds-checked little-endian reader: every read that would pass the end throws.
struct ByteReader {
    let bytes: [UInt8]
    var pos = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - pos }

    @inline(__always)
    mutating func need(_ n: Int, _ what: String) throws {
        if n < 0 || n > remaining { throw FormatError("truncated manifest: \(what) needs \(n) bytes, \(remaining) left") }
    }

    mutating func u8(_ what: String) throws -> UInt8 {
        try need(1, what)
        defer { pos += 1 }
        return bytes[pos]
    }

    // Fixed widths spelled out: a manifest's 27k entries are 12 reads each, and one loop over
    // a width unknown to the compiler was most of decoding torch's manifest.
    @inline(__always)
    mutating func u16(_ what: String) throws -> UInt16 {
        try need(2, what)
        let p = pos
        pos = p + 2
        return UInt16(bytes[p]) | UInt16(bytes[p + 1]) << 8
    }

    @inline(__always)
    mutating func u32(_ what: String) throws -> UInt32 {
        try need(4, what)
        let p = pos
        pos = p + 4
        return UInt32(bytes[p]) | UInt32(bytes[p + 1]) << 8 | UInt32(bytes[p + 2]) << 16 | UInt32(bytes[p + 3]) << 24
    }

    @inline(__always)
    mutating func u64(_ what: String) throws -> UInt64 {
        try need(8, what)
        let p = pos
        pos = p + 8
        let lo = UInt64(bytes[p]) | UInt64(bytes[p + 1]) << 8 | UInt64(bytes[p + 2]) << 16 | UInt64(bytes[p + 3]) << 24
        let hi = UInt64(bytes[p + 4]) | UInt64(bytes[p + 5]) << 8 | UInt64(bytes[p + 6]) << 16 | UInt64(bytes[p + 7]) << 24
        return lo | hi << 32
    }

    @inline(__always)
    mutating func i64(_ what: String) throws -> Int64 { Int64(bitPattern: try u64(what)) }

    mutating func raw(_ n: Int, _ what: String) throws -> [UInt8] {
        try need(n, what)
        defer { pos += n }
        return Array(bytes[pos..<pos + n])
    }

    mutating func blob(_ what: String, max: Int) throws -> [UInt8] {
        let n = Int(try u32(what))
        if n > max { throw FormatError("\(what) of \(n) bytes exceeds \(max)") }
        return try raw(n, what)
    }

    /// A count of records of at least `minRecord` bytes each: refused when the rest of the input
    /// could not hold them, so hostile counts never cause huge allocations.
    mutating func count(_ what: String, minRecord: Int) throws -> Int {
        // Compared as UInt64: Int(n) traps for counts of 2^63 and more.
        let n = try u64(what)
        if n > UInt64(remaining / max(minRecord, 1)) {
            throw FormatError("\(what) count \(n) cannot fit in the \(remaining) bytes left")
        }
        return Int(n)
    }
}
