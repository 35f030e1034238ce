// Read-ahead along a file: a read that reaches a chunk of the file starts the next chunks —
// fetched by the pool when they are not cached, or paged in from the cache file with
// posix_fadvise(WILLNEED) when they are. The window doubles while reads stay sequential
// and falls back when they jump.
import Synchronization
import EnvFormat

public struct ReadAheadConfig: Sendable {
    public var initialChunks = 2
    public var maxChunks = 16
    public init() {}
}

public final class ReadAhead: Sendable {
    struct Stream { var nextOffset: UInt64; var window: Int; var aheadUntil: Int }

    static let slack: UInt64 = 8 << 20
    let config: ReadAheadConfig
    let fetcher: ChunkFetcher
    let pool: FetchPool?
    private let streams = Mutex<[UInt64: Stream]>([:])

    public init(config: ReadAheadConfig, fetcher: ChunkFetcher, pool: FetchPool?) {
        self.config = config
        self.fetcher = fetcher
        self.pool = pool
    }

    /// Called for a read of `ino` at `offset`+`length` that touched spans up to `lastSpan` of `spans`.
    public func observe(ino: UInt64, offset: UInt64, length: Int, lastSpan: Int, spans: Range<Int>, manifest: Manifest) {
        let (from, to) = streams.withLock { s -> (Int, Int) in
            var st = s[ino] ?? Stream(nextOffset: 0, window: config.initialChunks, aheadUntil: lastSpan)
            // The kernel keeps several reads of one file in flight, so they arrive slightly out
            // of order: anything near the expected offset still counts as sequential.
            let near = offset + Self.slack >= st.nextOffset && offset <= st.nextOffset + Self.slack
            if offset != 0 && near {
                st.window = min(st.window * 2, config.maxChunks)
            } else if !near {
                st.window = config.initialChunks
                st.aheadUntil = lastSpan
            }
            st.nextOffset = max(st.nextOffset, offset + UInt64(length))
            let target = min(lastSpan + st.window, spans.upperBound - 1)
            let from = max(st.aheadUntil + 1, lastSpan + 1)
            if target >= from { st.aheadUntil = target }
            if s.count > 4096 { s.removeAll(keepingCapacity: true) }
            s[ino] = st
            return (from, target)
        }
        guard from <= to else { return }
        var missing: [UInt32] = []
        for i in from...to {
            let c = manifest.spans[i].chunk
            if c == Manifest.Span.zeros { continue }
            // Hashed or written by this process moments ago: its pages are in the page cache
            // already (a WILLNEED for each was 3.6 % of a cold mount's daemon CPU).
            if fetcher.verifiedRecently(c) { continue }
            if let fd = try? fetcher.cache.open(manifest.chunks[Int(c)].id) {
                fd.willNeed()
                fd.close()
            } else {
                missing.append(c)
            }
        }
        if !missing.isEmpty { pool?.readAhead(missing) }
    }
}
