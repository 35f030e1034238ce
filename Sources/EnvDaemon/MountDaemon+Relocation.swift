import EnvFS
import EnvFormat
import SysKit

extension MountDaemon {
    /// The recorded source path, created if missing, when no mount point is given.
    static func defaultMountpoint(_ manifest: Manifest) throws -> String {
        let source = String(decoding: manifest.sourcePath, as: UTF8.self)
        guard source.hasPrefix("/"), source != "/" else { throw MountError("the manifest records no source path; give a mount point") }
        if !FS.exists(source) {
            do { try FS.makeDirectories(source) } catch { throw MountError("cannot create the mount point \(source): \(error)") }
        }
        return try prepareMountpoint((try? FS.realpath(source)) ?? source)
    }

    /// Says, before mounting, what relocation and the preflight found.
    static func reportRelocation(_ manifest: Manifest, mountpoint: String, relocate: Bool) {
        let relocated = !relocate ? nil : RelocatedFiles.make(manifest: manifest, mountpoint: mountpoint.pathBytes)
        reportRelocation(manifest, relocated, mountpoint: mountpoint, relocate: relocate)
    }

    /// The same, with this mount's relocation already made.
    static func reportRelocation(_ manifest: Manifest, _ relocated: RelocatedFiles?, mountpoint: String, relocate: Bool) {
        for f in Preflight.run(manifest) where f.level != .ok {
            Console.error("envmount: \(f.level == .failure ? "warning: will fail" : "warning"): \(f.text)")
        }
        for line in relocationLines(manifest, relocated, relocate: relocate) { Console.error("envmount: \(line)") }
    }

    /// What relocation does at this mount; `listLimit` files that keep the old path are named
    /// (the terminal gets 20, the log all of them).
    static func relocationLines(_ manifest: Manifest, _ relocated: RelocatedFiles?, relocate: Bool, listLimit: Int = 20) -> [String] {
        let source = String(decoding: manifest.sourcePath, as: UTF8.self)
        guard let r = relocated else {
            return !relocate && !manifest.relocation.isEmpty
                ? ["--no-relocate: \(manifest.relocation.files.count) files and \(manifest.relocation.symlinks.count) symlinks still name \(source)"]
                : []
        }
        var lines = ["relocated from \(source): \(r.fileCount) files and \(r.symlinkCount) symlinks present the mount path"]
        if !r.unrelocated.isEmpty {
            let total = r.unrelocated.reduce(0) { $0 + $1.count }
            lines.append("\(r.unrelocated.count) binary files keep \(total) references to the old paths (a longer path does not fit in place; mount at a path no longer than \(source) to relocate them):")
            for u in r.unrelocated.prefix(listLimit) { lines.append("  \(u.path) (\(u.count))") }
            if r.unrelocated.count > listLimit { lines.append("  … and \(r.unrelocated.count - listLimit) more (all listed in the mount's log)") }
        }
        return lines
    }
}
