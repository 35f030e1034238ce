/// Errors of the chunk cache that callers act on (other failures are `SystemError`s).
public enum CacheError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The entry could not be cached: the file system is out of space (ENOSPC/EDQUOT) and every
    /// entry that could be evicted is pinned, or the entry alone is larger than the cache's limit.
    /// The bytes are still good: serve them from memory without caching.
    case full(needed: UInt64, detail: String)

    public var description: String {
        switch self {
        case .full(let needed, let detail): "chunk cache full: no room for \(needed) bytes (\(detail))"
        }
    }
}
