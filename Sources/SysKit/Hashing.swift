import CCrypto

/// SHA-256 through OpenSSL's libcrypto (SHA-NI where the CPU has it).
public enum SHA256 {
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        hash(bytes, 0..<bytes.count)
    }

    public static func hash(_ bytes: [UInt8], _ range: Range<Int>) -> [UInt8] {
        precondition(range.lowerBound >= 0 && range.upperBound <= bytes.count)
        var out = [UInt8](repeating: 0, count: 32)
        // SAFETY: input range checked above; output is a local 32-byte buffer.
        bytes.withUnsafeBytes { inp in
            out.withUnsafeMutableBytes { o in
                _ = CCrypto.SHA256(inp.baseAddress!.assumingMemoryBound(to: UInt8.self) + range.lowerBound,
                                   range.count, o.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        return out
    }
}
