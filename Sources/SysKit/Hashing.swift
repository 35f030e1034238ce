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

/// Standard base64 with padding (RFC 4648).
public enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = UInt32(bytes[i])
            let b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0
            let b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
            let v = b0 << 16 | b1 << 8 | b2
            out.append(alphabet[Int(v >> 18 & 63)])
            out.append(alphabet[Int(v >> 12 & 63)])
            out.append(i + 1 < bytes.count ? alphabet[Int(v >> 6 & 63)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? alphabet[Int(v & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
