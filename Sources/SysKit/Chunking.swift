import CKernels

/// Content-defined chunk boundaries (FastCDC, normalized), computed in C.
public enum CDC {
    /// Length of the next chunk starting at `data[start]`, or 0 when more data is needed.
    public static func cut(_ data: [UInt8], start: Int, minSize: Int, avgSize: Int, maxSize: Int, atEnd: Bool) -> Int {
        precondition(start >= 0 && start <= data.count)
        // SAFETY: the C function reads only data[start..<count].
        return data.withUnsafeBytes { raw in
            Int(envmount_cdc_cut(raw.baseAddress!.assumingMemoryBound(to: UInt8.self) + start, data.count - start,
                                 minSize, avgSize, maxSize, atEnd ? 1 : 0))
        }
    }
}
