import EnvCache
import EnvFormat
import EnvFS
import EnvStore
import SysKit

public struct OpenedEnvironment: Sendable {
    public var env: String
    public var ref: Ref
    public var manifest: Manifest
    public var offline: Bool
    /// The trusted key that signed the ref, when the mount requires one.
    public var signedBy: TrustedKey?
    /// The materialized tree's seal, read while the manifest was decoded (native mounts).
    public var sealPreread: SealPreread?

    public init(env: String, ref: Ref, manifest: Manifest, offline: Bool, signedBy: TrustedKey? = nil) {
        self.env = env
        self.ref = ref
        self.manifest = manifest
        self.offline = offline
        self.signedBy = signedBy
    }

    public var manifestSummary: String {
        "\(manifest.entries.count) entries, \(formatBytes(manifest.totalFileBytes))\(offline ? ", offline from cache" : "")"
            + (signedBy.map { ", signed by key \($0.key.keyID)" } ?? "")
    }
}

/// Finds an environment's ref and manifest: from the store, or from the cache when the store
/// cannot be reached.
public struct EnvironmentResolver {
    public let store: any ObjectStore
    public let cache: ChunkCache
    /// With a cached ref to fall back on, the store gets this many seconds for the ref (and a
    /// refused connection or unknown host is an answer) before the mount goes offline.
    public var refTimeout: Double? = nil
    /// Which refs are accepted (EnvFormat/TrustPolicy.swift); checked on every ref, fresh or
    /// cached, before its manifest is read.
    public var trust = TrustPolicy.none
    /// Told each manifest id before that manifest is loaded and decoded (a mount starts reading
    /// the tree's seal then: SealPreread).
    public var willLoadManifest: (@Sendable (ChunkID) -> Void)? = nil

    public init(store: any ObjectStore, cache: ChunkCache) {
        self.store = store
        self.cache = cache
    }

    /// The environment the parent `envmount mount` already resolved, for its daemon: the same
    /// ref (the parent cached it), so the daemon serves exactly what the parent reported and
    /// pays no second round trip to the store.
    public func resolved(env: String, manifest: ChunkID, offline: Bool) throws -> OpenedEnvironment {
        guard let bytes = cache.loadRef(store: store.description, env: env), let ref = try? Ref.decode(bytes),
              ref.manifest == manifest else {
            return try resolve(env: env)
        }
        let key = try trust.admit(ref, env: env, store: store.description, source: "cached refs/\(env) of \(store.description)")
        return OpenedEnvironment(env: env, ref: ref, manifest: try loadManifest(manifest), offline: offline, signedBy: key)
    }

    public func resolve(env: String?) throws -> OpenedEnvironment {
        if store.isKnownAbsent,
           env == nil || cache.loadRef(store: store.description, env: env!) == nil {
            throw MountError("store \(store.description) does not exist or is not a directory")
        }
        let name = try env ?? onlyEnvironment()
        let bytes: [UInt8]
        var source = "refs/\(name) in \(store.description)"
        var offlineReason: String?
        do {
            let key = Ref.objectKey(env: name)
            let fallback = refTimeout != nil && cache.loadRef(store: store.description, env: name) != nil
            bytes = fallback ? try store.probe(key, deadline: refTimeout!) : try store.get(key)
        } catch let e as StoreError where e.isNotFound {
            let others = (try? store.listEnvironments()) ?? []
            throw MountError("no environment '\(name)' in \(store.description)"
                             + (others.isEmpty ? " (it holds none)" : " (it holds: \(others.joined(separator: ", ")))"))
        } catch let e as StoreError where e.isTransient {
            guard let cached = cache.loadRef(store: store.description, env: name), (try? Ref.decode(cached)) != nil else {
                throw MountError("\(e); and no cached copy of '\(name)' to mount offline")
            }
            offlineReason = "\(e)"
            bytes = cached
            source = "cached refs/\(name) of \(store.description)"
        }
        let ref: Ref
        do { ref = try Ref.decode(bytes) } catch { throw MountError("\(source) is invalid: \(error)") }
        // Before the ref is cached or its manifest read: an offline mount checks the cached copy the same way.
        let key = try trust.admit(ref, env: name, store: store.description, source: source)
        if let why = offlineReason {
            Console.error("envmount: store unreachable (\(why)); mounting cached revision \(ref.revision) of \(name) offline")
        } else if cache.loadRef(store: store.description, env: name) != bytes {
            // Only a ref that moved is written: the write is durable (fsync, rename), 4-8 ms of a
            // warm native mount's ~45 for the same bytes every time.
            try? cache.storeRef(store: store.description, env: name, bytes)
        }
        let manifest = try loadManifest(ref.manifest)
        return OpenedEnvironment(env: name, ref: ref, manifest: manifest, offline: offlineReason != nil, signedBy: key)
    }

    public func onlyEnvironment() throws -> String {
        let envs: [String]
        do { envs = try store.listEnvironments() } catch {
            throw MountError("cannot list environments in \(store.description) (\(error)); name one with --env")
        }
        switch envs.count {
        case 0: throw MountError("\(store.description) holds no environments (publish one with envpublish)")
        case 1: return envs[0]
        default: throw MountError("\(store.description) holds several environments (\(envs.joined(separator: ", "))); choose one with --env")
        }
    }

    /// The manifest named by `id`, from the cache or the store, checked against its id.
    public func loadManifest(_ id: ChunkID) throws -> Manifest {
        willLoadManifest?(id)
        if let b = cache.loadManifest(id), ChunkID.of(b) == id, let m = try? Manifest.decode(b) { return m }
        let bytes = try store.get(Ref.manifestKey(id))
        guard ChunkID.of(bytes) == id else {
            throw MountError("manifest \(id.hex) in \(store.description) does not match its SHA-256: the store is damaged")
        }
        let m: Manifest
        do { m = try Manifest.decode(bytes) } catch {
            throw MountError("manifest \(id.hex) in \(store.description) is invalid: \(error)")
        }
        try? cache.storeManifest(id, bytes)
        return m
    }
}
