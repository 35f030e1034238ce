import SysKit

/// Content-defined chunking parameters. Stored in each manifest, so they can change later
/// without breaking mounts of older manifests.
public struct ChunkingParams: Sendable, Equatable {
    public var minSize: Int
    public var avgSize: Int
    public var maxSize: Int

    public init(minSize: Int, avgSize: Int, maxSize: Int) {
        self.minSize = minSize
        self.avgSize = avgSize
        self.maxSize = maxSize
    }

    public static let `default` = ChunkingParams(minSize: 256 << 10, avgSize: 1 << 20, maxSize: 4 << 20)

    public var isValid: Bool {
        minSize >= 64 && minSize < avgSize && avgSize < maxSize && maxSize <= 64 << 20
            && avgSize.nonzeroBitCount == 1
    }
}

/// Cuts one continuous byte stream (the regular files of a tree, in path order) into chunks,
/// remembering which file bytes each chunk holds. Small files of one package end up sharing a
/// chunk; an edit moves only the boundaries near it.
public struct StreamChunker {
    /// A run of one file's bytes inside a chunk.
    public struct Piece: Sendable, Equatable {
        public var file: Int
        public var fileOffset: UInt64
        public var chunkOffset: Int
        public var length: Int
    }

    public struct Chunk: Sendable {
        public var bytes: [UInt8]
        public var pieces: [Piece]
    }

    public let params: ChunkingParams
    private var buffer: [UInt8] = []
    private var start = 0
    private var pieces: [Piece] = []   // chunkOffset relative to `start`

    public init(params: ChunkingParams) {
        self.params = params
        buffer.reserveCapacity(params.maxSize * 2)
    }

    private var pending: Int { buffer.count - start }

    /// Adds `bytes` of `file` starting at `fileOffset`; returns the chunks completed by them.
    public mutating func append(file: Int, fileOffset: UInt64, bytes: ArraySlice<UInt8>) -> [Chunk] {
        if bytes.isEmpty { return [] }
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        pieces.append(Piece(file: file, fileOffset: fileOffset, chunkOffset: pending, length: bytes.count))
        buffer.append(contentsOf: bytes)
        var out: [Chunk] = []
        while pending >= params.maxSize {
            let n = CDC.cut(buffer, start: start, minSize: params.minSize, avgSize: params.avgSize,
                            maxSize: params.maxSize, atEnd: false)
            out.append(take(n))
        }
        return out
    }

    /// Cuts whatever is pending: at a hole in a sparse file and at the end of the stream. Before
    /// the end, content-defined cuts are still taken so the tail matches an unsplit stream.
    public mutating func finish() -> [Chunk] {
        var out: [Chunk] = []
        while pending > 0 {
            let n = CDC.cut(buffer, start: start, minSize: params.minSize, avgSize: params.avgSize,
                            maxSize: params.maxSize, atEnd: true)
            out.append(take(n))
        }
        buffer.removeAll(keepingCapacity: true)
        start = 0
        return out
    }

    private mutating func take(_ n: Int) -> Chunk {
        precondition(n > 0 && n <= pending)
        let bytes = Array(buffer[start..<start + n])
        var taken: [Piece] = []
        var rest: [Piece] = []
        for var p in pieces {
            if p.chunkOffset + p.length <= n {
                taken.append(p)
            } else if p.chunkOffset >= n {
                p.chunkOffset -= n
                rest.append(p)
            } else {
                let head = n - p.chunkOffset
                taken.append(Piece(file: p.file, fileOffset: p.fileOffset, chunkOffset: p.chunkOffset, length: head))
                rest.append(Piece(file: p.file, fileOffset: p.fileOffset + UInt64(head), chunkOffset: 0, length: p.length - head))
            }
        }
        pieces = rest
        start += n
        return Chunk(bytes: bytes, pieces: taken)
    }
}
