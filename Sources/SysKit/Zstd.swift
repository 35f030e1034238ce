import CZstd
import Synchronization

public struct ZstdError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// One-shot zstd frames. Each chunk is an independent frame, so any chunk decodes alone.
public enum Zstd {
    /// Compression contexts, reused: ZSTD_compress would allocate and initialise one per call,
    /// which for ~1 MiB chunks is a measurable part of a publish.
    private static let contexts = Mutex<[CompressionContext]>([])

    /// A ZSTD_CCtx; Sendable because the pool hands each one to a single caller at a time.
    struct CompressionContext: @unchecked Sendable { let raw: OpaquePointer }

    public static func compress(_ input: [UInt8], _ range: Range<Int>? = nil, level: Int32 = 3) throws -> [UInt8] {
        let r = range ?? 0..<input.count
        precondition(r.lowerBound >= 0 && r.upperBound <= input.count)
        let bound = ZSTD_compressBound(r.count)
        var out = [UInt8](repeating: 0, count: bound)
        guard let cctx = contexts.withLock({ $0.popLast() }) ?? ZSTD_createCCtx().map(CompressionContext.init) else {
            throw ZstdError(description: "cannot allocate a zstd context")
        }
        defer { contexts.withLock { $0.append(cctx) } }
        // SAFETY: source range checked above; destination capacity is ZSTD_compressBound; the
        // context is used by this call only (taken out of the pool until it returns).
        let n = input.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                ZSTD_compressCCtx(cctx.raw, dst.baseAddress, dst.count, src.baseAddress! + r.lowerBound, r.count, level)
            }
        }
        if ZSTD_isError(n) != 0 { throw ZstdError(description: String(cString: ZSTD_getErrorName(n))) }
        out.removeLast(out.count - n)
        return out
    }

    /// Decodes a frame that must expand to exactly `expectedSize` bytes.
    public static func decompress(_ input: [UInt8], expectedSize: Int) throws -> [UInt8] {
        if input.isEmpty { throw ZstdError(description: "empty zstd frame") }
        var n = 0
        // Not zero-filled first: zstd writes every byte it reports, and the array holds only
        // those (measured: the fill was 2.5 % of a cold mount's daemon CPU).
        // SAFETY: zstd writes at most `buf.count` bytes; only the `n` it wrote are kept.
        let out = [UInt8](unsafeUninitializedCapacity: max(expectedSize, 1)) { buf, initialized in
            n = input.withUnsafeBytes { src in ZSTD_decompress(buf.baseAddress, expectedSize, src.baseAddress, src.count) }
            initialized = ZSTD_isError(n) != 0 ? 0 : n
        }
        if ZSTD_isError(n) != 0 { throw ZstdError(description: String(cString: ZSTD_getErrorName(n))) }
        if n != expectedSize { throw ZstdError(description: "frame decoded to \(n) bytes, expected \(expectedSize)") }
        return out
    }

    /// Decodes a frame whose content size is in its header, refusing anything above `limit`.
    public static func decompress(_ input: [UInt8], limit: Int) throws -> [UInt8] {
        // SAFETY: the pointer is only read within the array's count.
        let size = input.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        if size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN {
            throw ZstdError(description: "not a zstd frame with a known size")
        }
        if size > UInt64(limit) { throw ZstdError(description: "frame of \(size) bytes exceeds the limit \(limit)") }
        return try decompress(input, expectedSize: Int(size))
    }
}
