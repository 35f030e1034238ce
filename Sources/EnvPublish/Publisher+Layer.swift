// A publish of a writable envmount mount (WritableMount): the merged tree at the mount point is
// walked like any source, but a regular file the layer does not hold is the base revision's
// file, unchanged, and is never read. The overlay's upper directory holds every file that was
// created or modified (a write copies the whole file up: the layer is mounted metacopy=off),
// a whiteout for every deletion (the walk does not see the deleted name), and a replaced
// directory whole (an opaque directory's merged contents all come from the layer). So "not in
// upper" means "served from the base revision": its spans, size, mode, owner, mtime and
// relocation records are copied from the base manifest, and its chunks are reused as they are
// (each must still be in the store; a file with a missing chunk is read instead). A file found
// in the layer is read and chunked as in any publish, and dedup still applies to its chunks.
//
// Nothing of an unchanged file is read through the mount: the base's Python facts and the
// package list of its revision record stand in for pyvenv.cfg and the METADATA of untouched
// dist-info directories.
import SysKit
import EnvFormat
import EnvStore

extension Publisher {
    /// What a writable mount's publish takes from its base revision without reading it.
    struct LayerReuse {
        let layer: WritableMount
        let base: Manifest
        let baseRef: Ref
        /// The base revision's record (its package list), when the store still has it.
        let baseRecord: RevisionRecord?
        /// Walker node of each unchanged regular file → the base entry that owns its data.
        var files: [Int: Int] = [:]
        var bytes: UInt64 = 0
        /// Files not in the layer that are read anyway (a chunk of theirs is gone from the store,
        /// or their attributes differ from the base entry's).
        var readAnyway = 0
        /// The base's relocation prefixes (their numbers unchanged, so the base's records stay
        /// valid), then the mount point, which files written through the mount name.
        var prefixes: [Relocation.Prefix]

        /// Spans of base entry `owner`.
        func spans(_ owner: Int) -> ArraySlice<Manifest.Span> {
            let e = base.entries[owner]
            return base.spans[Int(e.first)..<Int(e.first) + Int(e.count)]
        }

        /// Whether the file at absolute path `path` under the mount point is as in the base
        /// revision (the layer holds nothing there, so the merged tree shows the base's entry or,
        /// if the base has none, nothing).
        func untouched(_ path: String) -> Bool {
            let root = layer.mountpoint == "/" ? "" : layer.mountpoint
            guard path.hasPrefix(root + "/") else { return false }
            return !layer.layerHolds(Array(path.utf8.dropFirst(root.utf8.count + 1)))
        }

        /// Facts the publish would find in files it does not read, taken from the base: the ELF
        /// machines and newest GLIBC of the unchanged binaries (a union with what the read files
        /// show), and the bundled interpreter.
        func merge(_ facts: [(key: String, value: String)]) -> [(key: String, value: String)] {
            var out = facts.filter { !["elf.machine", "elf.glibc", "python.bundled", "python.bundled.from"].contains($0.key) }
            var machines = Set(facts.first { $0.key == "elf.machine" }?.value.split(separator: ",").map(String.init) ?? [])
            machines.formUnion(base.metadataValue("elf.machine")?.split(separator: ",").map(String.init) ?? [])
            if !machines.isEmpty { out.append(("elf.machine", machines.sorted().joined(separator: ","))) }
            let glibc = [facts.first { $0.key == "elf.glibc" }?.value, base.metadataValue("elf.glibc")].compactMap { $0 }
                .max { PackageDiff.compareVersions($0, $1) < 0 }
            if let g = glibc { out.append(("elf.glibc", g)) }
            for key in ["python.bundled", "python.bundled.from"] {
                if let v = base.metadataValue(key) { out.append((key, v)) }
            }
            return out
        }
    }

    /// Decides, for every regular file of the walked merged tree, whether it is the base's file
    /// unchanged; those nodes take the base entry's attributes. nil when this is no publish of a
    /// writable mount, or when the base manifest is not in the store (then every file is read).
    func planLayerReuse(_ walker: inout TreeWalker, known: StoreState) throws -> LayerReuse? {
        guard let layer = options.layer else { return nil }
        let id = layer.record.manifest
        let base: Manifest
        do {
            let bytes = try store.get(Ref.manifestKey(id))
            guard ChunkID.of(bytes) == id else {
                throw PublishError.store("\(Ref.manifestKey(id)) in \(store.description) does not hash to its name; the store is damaged")
            }
            base = try Manifest.decode(bytes)
        } catch let e as StoreError where e.isNotFound {
            warn("envpublish: warning: the manifest of revision \(layer.record.revision) of \(layer.record.env), which the layer \(layer.layerDir) was made over, is not in \(store.description); every file of \(layer.mountpoint) is read")
            return nil
        } catch let e as PublishError {
            throw e
        } catch {
            throw PublishError.store("cannot read the base manifest \(Ref.manifestKey(id)) of \(layer.layerDir): \(error)")
        }
        let baseRecord = (try? RevisionRecord.decode(try store.get(RevisionRecord.objectKey(env: layer.record.env, revision: layer.record.revision))))
            .flatMap { $0.manifestID == id ? $0 : nil }

        var prefixes = base.relocation.prefixes
        let mp = layer.mountpoint.pathBytes
        if layer.mountpoint != "/", !prefixes.contains(where: { $0.from == mp }), prefixes.count < Relocation.maxPrefixes {
            prefixes.append(Relocation.Prefix(from: mp, to: []))
        }
        var plan = LayerReuse(layer: layer, base: base, baseRef: Ref(manifest: id, revision: layer.record.revision, publishedAt: 0),
                              baseRecord: baseRecord, prefixes: prefixes)
        for f in walker.files {
            let rel = Self.treePath(walker.builder, f.node)
            if layer.layerHolds(rel) { continue }
            guard let i = base.resolve(rel), base.entries[i].kind == .regular else { plan.readAnyway += 1; continue }
            let owner = Int(base.entries[i].owner)
            let e = base.entries[owner]
            // The merged tree shows the base's entry here; a file whose attributes say otherwise
            // is read rather than trusted.
            guard e.mtimeNs == f.stat.mtimeNs, e.mode == f.stat.mode,
                  plan.spans(owner).allSatisfy({ $0.chunk == Manifest.Span.zeros || known.present.contains(base.chunks[Int($0.chunk)].id) })
            else { plan.readAnyway += 1; continue }
            plan.files[f.node] = owner
            plan.bytes += e.size
            walker.builder.update(f.node) { n in
                n.size = e.size; n.mode = e.mode; n.uid = e.uid; n.gid = e.gid; n.mtimeNs = e.mtimeNs
            }
        }
        // Other names of a reused inode (hardlinks) carry its size too.
        for n in walker.builder.nodes.indices {
            if let o = walker.builder.nodes[n].hardlinkOf, let owner = plan.files[o] {
                let size = base.entries[owner].size
                walker.builder.update(n) { $0.size = size }
            }
        }
        return plan
    }

    /// The reused files' relocation records and RPATH patches, renumbered to the walker's nodes.
    static func reusedRelocation(_ reuse: LayerReuse) -> (files: [Relocation.File], patches: [Relocation.Patch]) {
        let rel = reuse.base.relocation
        var fileByEntry: [UInt32: Relocation.File] = [:]
        for f in rel.files { fileByEntry[f.entry] = f }
        var patchesByEntry: [UInt32: [Relocation.Patch]] = [:]
        for p in rel.patches { patchesByEntry[p.entry, default: []].append(p) }
        var files: [Relocation.File] = [], patches: [Relocation.Patch] = []
        for (node, owner) in reuse.files {
            if var f = fileByEntry[UInt32(owner)] {
                f.entry = UInt32(node)
                files.append(f)
            }
            for var p in patchesByEntry[UInt32(owner)] ?? [] {
                p.entry = UInt32(node)
                patches.append(p)
            }
        }
        return (files, patches)
    }

    /// pyvenv.cfg's facts: from the base when the layer did not change the file, else read.
    func pythonFacts(_ sourcePath: String, reuse: LayerReuse?) -> [(key: String, value: String)] {
        guard let reuse, reuse.untouched(sourcePath + "/pyvenv.cfg") else { return Self.pythonFacts(sourcePath) }
        var facts: [(key: String, value: String)] = [("envmount.format", "\(Manifest.formatVersion)")]
        for key in ["python.home", "python.version"] {
            if let v = reuse.base.metadataValue(key) { facts.append((key, v)) }
        }
        return facts.sorted { $0.key < $1.key }
    }

    /// The installed distributions for the revision record; untouched dist-info directories are
    /// taken from the base revision's record by name and version instead of read.
    func packages(_ sourcePath: String, reuse: LayerReuse?) -> [Distribution] {
        guard let reuse, let record = reuse.baseRecord else { return PackageScanner.scan(root: sourcePath) }
        return PackageScanner.scan(root: sourcePath, known: KnownDistributions(packages: record.packages, untouched: reuse.untouched))
    }
}
