import EnvFS
import EnvFormat
import EnvDaemon
import SysKit

/// `envmount cache clear` and `verify` for the materialized trees beside the chunks.
enum CachedTrees {
    /// The trees in a cache directory whose manifest is cached (a tree without one cannot be
    /// checked and is treated as damaged).
    static func all(_ cacheDir: String) -> [(id: String, tree: MaterializedTree?)] {
        let dir = cacheDir + "/v1/trees"
        let names = (try? FS.listDirectory(dir)) ?? []
        return names.filter { $0.hasSuffix(".seal") }.map { seal in
            let hex = String(seal.dropLast(".seal".count))
            guard let id = ChunkID(hex: hex), let bytes = try? FS.readFile("\(cacheDir)/v1/manifests/\(hex)"),
                  ChunkID.of(bytes) == id, let m = try? Manifest.decode(bytes) else { return (hex, nil) }
            return (hex, MaterializedTree(cacheDirectory: cacheDir, manifest: m, id: id))
        }
    }

    /// Trees a mounted overlay uses right now.
    static func inUse() -> Set<String> {
        Set(Mountpoints.all().compactMap { EnvOverlay.of($0)?.nativeTree })
    }

    /// Removes the trees no mount uses; returns how many were removed and how many kept.
    static func clear(_ cacheDir: String) -> (removed: Int, kept: Int) {
        let used = inUse()
        var removed = 0, kept = 0
        for (hex, tree) in all(cacheDir) {
            let path = "\(cacheDir)/v1/trees/\(hex)"
            if used.contains(path) { kept += 1; continue }
            if let tree { tree.remove() } else { try? FS.removeTree(path); try? FS.unlink(path + ".seal"); try? FS.removeTree(path + ".reloc") }
            removed += 1
        }
        return (removed, kept)
    }

    /// Re-hashes every file of every tree no mount uses; removes a damaged tree. Returns the
    /// trees checked and those removed.
    static func verify(_ cacheDir: String) -> (checked: Int, bad: Int) {
        let used = inUse()
        var checked = 0, bad = 0
        for (hex, tree) in all(cacheDir) {
            let path = "\(cacheDir)/v1/trees/\(hex)"
            checked += 1
            guard let tree else {
                Console.error("envmount: materialized tree \(path) has no cached manifest; removed")
                if !used.contains(path) { try? FS.removeTree(path); try? FS.unlink(path + ".seal"); try? FS.removeTree(path + ".reloc") }
                bad += 1
                continue
            }
            if case let .damaged(why) = tree.check(rehashAll: true) {
                Console.error("envmount: materialized tree \(path) is damaged (\(why))" + (used.contains(path) ? "; in use, unmount it and verify again" : "; removed"))
                if !used.contains(path) { tree.remove() }
                bad += 1
            }
        }
        return (checked, bad)
    }
}
