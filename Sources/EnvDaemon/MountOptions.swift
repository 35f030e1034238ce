import EnvFormat
import EnvStore

/// Everything a mount is told, declared once. The CLI fills it from its flags and calls
/// `validate()`; a background mount hands the whole value to its daemon as JSON (see
/// `DaemonLauncher`), so an option added here reaches the daemon with no other change.
public struct MountOptions: Codable, Sendable, Equatable {
    /// The store: an absolute path, file://, s3:// or http(s):// URL.
    public var store: String
    /// Absolute path of the directory to mount on; empty: the path the environment was
    /// published from (created if missing).
    public var mountpoint: String
    public var env: String?
    /// A recorded revision to mount on purpose instead of the current one (`--revision`).
    public var revision: UInt64?
    /// Chunk cache directory (nil: ChunkCache.defaultDirectory()).
    public var cacheDir: String?
    /// Most bytes of cached chunks (nil: no limit).
    public var cacheSize: UInt64?
    /// Daemon log file (nil: CACHE_DIR/logs/ENV.log).
    public var logFile: String?
    public var storeOptions = StoreOptions()
    /// Seconds the store gets for the ref when a cached ref exists (then the mount goes offline).
    public var refTimeout: Double = 2
    /// Which environments are accepted: trusted keys, rollback state, --max-age.
    public var trust = TrustOptions()
    /// Kernel read-ahead and largest FUSE read, KiB.
    public var readAheadKB = 1024
    /// Seconds the kernel caches names and attributes.
    public var kernelCacheTimeout: Double = 86400
    public var keepCache = true
    public var splice = true
    /// Answer OPEN/OPENDIR with ENOSYS so the kernel stops sending them.
    public var zeroMessageOpen = true
    /// While a profile is prefetched, fill the kernel's caches with its directories and small
    /// files (KernelPrimer).
    public var primeKernel = true
    public var fetchThreads = 16
    public var readAheadChunks = 16
    /// Chunks of the path-ordered stream fetched after a miss (nil: see `streamWindow(for:)`).
    public var streamReadAhead: Int?
    /// A recorded profile to prefetch once mounted.
    public var prefetch: String?
    /// Without `prefetch`, prefetch profile `default` when the store has one for the revision
    /// (envpublish records it at publish time).
    public var prefetchDefault = true
    /// libfuse's per-request debug output.
    public var fuseDebug = false
    /// Present files that name the source path with the mount path instead (see RelocatedFiles).
    public var relocate = true
    /// A local writable layer's directory (overlayfs upper and work directories; root only).
    public var writable: String?
    /// Serve a materialized tree of the revision when the cache holds one, and build one once
    /// every chunk is cached.
    public var native = true
    /// Put a read-only overlay in front of a plain root FUSE mount (FrontOverlay), so Python's
    /// isatty IOCTLs never reach the daemon.
    public var frontOverlay = true

    /// Longest `--timeout` taken: a day. Larger values only hide a hung store.
    public static let maxRequestTimeout: Double = 86400

    public init(store: String, mountpoint: String) {
        self.store = store
        self.mountpoint = mountpoint
    }

    /// The stream read-ahead window on a store: `streamReadAhead` when given, else 32 chunks
    /// where every request costs a round trip and none on a local store, which has no latency to hide.
    public func streamWindow(for traits: StoreTraits) -> Int {
        streamReadAhead ?? (traits.latency == .remote ? 32 : 0)
    }

    /// Throws a `MountError` naming the option at fault.
    public func validate() throws {
        if let e = env, !Ref.isValidEnvName(e) { throw MountError("invalid environment name '\(e)'") }
        let t = storeOptions.requestDeadline
        guard t.isFinite, t > 0, t <= Self.maxRequestTimeout else {
            throw MountError("--timeout must be a number of seconds more than 0 and at most \(Int(Self.maxRequestTimeout)), not \(t)")
        }
        guard refTimeout.isFinite, refTimeout > 0, refTimeout <= 3600 else {
            throw MountError("--ref-timeout must be a number of seconds more than 0 and at most 3600, not \(refTimeout)")
        }
        guard kernelCacheTimeout.isFinite, kernelCacheTimeout >= 0, kernelCacheTimeout <= 365 * 86400 else {
            throw MountError("--kernel-cache-timeout must be 0...\(365 * 86400) seconds, not \(kernelCacheTimeout)")
        }
        try trust.validate()
        if let c = cacheSize, c == 0 { throw MountError("--cache-size must be more than 0") }
        guard (1...256).contains(fetchThreads) else { throw MountError("--fetch-threads must be 1...256") }
        guard (0...256).contains(streamReadAhead ?? 0) else { throw MountError("--stream-read-ahead must be 0...256") }
        guard (0...256).contains(readAheadChunks) else { throw MountError("--read-ahead-chunks must be 0...256") }
        guard (4...16384).contains(readAheadKB) else { throw MountError("--read-ahead-kb must be 4...16384") }
        if prefetch != nil && !prefetchDefault { throw MountError("--prefetch and --no-prefetch exclude each other") }
        if let p = prefetch, !Ref.isValidEnvName(p) { throw MountError("invalid profile name '\(p)' (letters, digits, '-', '_', '.')") }
    }
}
