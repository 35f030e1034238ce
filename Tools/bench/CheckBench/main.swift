// A/B timing of a materialized tree's damage check, in one process: the path-per-file lstat
// pass that MaterializedTree.check() used until the walk (reproduced here as it was: the seal
// read, then `lstat(root + "/" + manifest.path(i))` of every sealed file on 16 threads) against
// MaterializedTree.check() as it is, alternating, on a tree left as it is (nothing is written:
// a check writes only when it re-seals a file whose ctime moved).
//
//   swift build -c release --product envmount-checkbench
//   .build/release/envmount-checkbench CACHE_DIR [REPS] [--cold] [--reloc MOUNTPOINT] [--parse-only]
//   (--parse-only: only the manifest read and decode and the seal read, each timed alone)
//   (--cold: `sync; echo 3 > /proc/sys/vm/drop_caches` before every check; root only)
import EnvFS
import EnvFormat
import Foundation
import Glibc
import Synchronization
import SysKit

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

func dropCaches() {
    sync()
    guard let fd = try? FileDescriptor.open("/proc/sys/vm/drop_caches", O_WRONLY) else { fatalError("cannot drop caches (root only)") }
    try? fd.writeAll("3\n")
    fd.close()
}

final class Outcomes: Sendable {
    let slots: Mutex<[Bool]>
    init(_ n: Int) { slots = Mutex(Array(repeating: false, count: n)) }
    func set(_ k: Int, _ v: Bool) { slots.withLock { $0[k] = v } }
}

/// The seal as MaterializedTree.readSeal read it before the walk: lines, then fields.
func oldReadSeal(_ tree: MaterializedTree) -> [(entry: Int, ctimeNs: Int64, digest: ArraySlice<UInt8>, key: ArraySlice<UInt8>)]? {
    guard let bytes = try? FS.readFile(tree.path + ".seal") else { return nil }
    let lines = bytes.split(separator: 0x0a)
    guard let first = lines.first, String(decoding: first, as: UTF8.self).split(separator: " ").count >= 3 else { return nil }
    let int = MaterializedTree.decimal
    var out: [(entry: Int, ctimeNs: Int64, digest: ArraySlice<UInt8>, key: ArraySlice<UInt8>)] = []
    out.reserveCapacity(lines.count)
    for l in lines.dropFirst() {
        let p = l.split(separator: 0x20)
        guard p.count == 4, let i = int(p[0]).map(Int.init), let c = int(p[1]), i >= 0, i < tree.manifest.entries.count else { return nil }
        out.append((i, c, p[2], p[3]))
    }
    return out
}

/// The check before the walk, as it was (its seal read and stat pass; a tree found intact
/// needs nothing more).
func pathCheck(_ tree: MaterializedTree) -> Bool {
    guard FS.exists(tree.path), let seal = oldReadSeal(tree) else { return false }
    let m = tree.manifest
    let sealed = seal.map(\.entry)
    let results = Outcomes(sealed.count)
    let base = tree.path.pathBytes + [UInt8(ascii: "/")]
    let stride = 256
    let parts = (sealed.count + stride - 1) / stride
    final class Next: Sendable { let value = Atomic<Int>(0) }
    let next = Next()
    let done = DispatchGroup()
    for _ in 0..<min(16, parts) {
        done.enter()
        Thread {
            while true {
                let part = next.value.add(1, ordering: .relaxed).oldValue
                if part >= parts { break }
                for k in part * stride..<min(sealed.count, (part + 1) * stride) {
                    let i = sealed[k]
                    let p = base + m.path(i)
                    guard let st = try? FS.lstat(p), st.kind == .regular, st.size == m.entries[i].size,
                          st.mtimeNs == m.entries[i].mtimeNs else { results.set(k, false); continue }
                    results.set(k, true)
                }
            }
            done.leave()
        }.start()
    }
    done.wait()
    return results.slots.withLock { $0.allSatisfy { $0 } }
}

var args = Array(CommandLine.arguments.dropFirst())
let cold = args.contains("--cold")
let parseOnly = args.contains("--parse-only")
args.removeAll { $0 == "--cold" || $0 == "--parse-only" }
var relocMount: String?
if let r = args.firstIndex(of: "--reloc"), r + 1 < args.count { relocMount = args[r + 1]; args.removeSubrange(r...r + 1) }
guard let cacheDir = args.first else { print("usage: envmount-checkbench CACHE_DIR [REPS] [--cold] [--reloc MOUNTPOINT]"); exit(2) }
let reps = args.count > 1 ? Int(args[1]) ?? 5 : 5
let trees = try FS.listDirectory(cacheDir + "/v1/trees").filter { $0.hasSuffix(".seal") }
guard trees.count == 1, let id = ChunkID(hex: String(trees[0].dropLast(5))) else { print("want exactly one sealed tree in \(cacheDir)"); exit(2) }
let manifest = try Manifest.decode(try FS.readFile("\(cacheDir)/v1/manifests/\(id.hex)"))
let tree = MaterializedTree(cacheDirectory: cacheDir, manifest: manifest, id: id)
print("tree \(tree.path): \(tree.contents()?.files.count ?? 0) sealed files, \(manifest.entries.count) entries; \(cold ? "caches dropped before each check" : "warm")")
var old: [Double] = [], new: [Double] = [], reloc: [Double] = []
for _ in 0..<(parseOnly ? 0 : reps) {
    if cold { dropCaches() }
    var t0 = now()
    precondition(pathCheck(tree), "the path check found damage")
    old.append((now() - t0) * 1000)
    if cold { dropCaches() }
    t0 = now()
    precondition(tree.check() == .ready, "the walk found damage")
    new.append((now() - t0) * 1000)
    if let relocMount, let rf = RelocatedFiles.make(manifest: manifest, mountpoint: relocMount.pathBytes) {
        if cold { dropCaches() }
        t0 = now()
        let st = RelocationLayer(tree: tree, mountpoint: relocMount.pathBytes).check(rf)
        reloc.append((now() - t0) * 1000)
        precondition(st == .ready, "relocation layer: \(st)")
    }
}
func show(_ xs: [Double]) -> String {
    let s = xs.sorted()
    return "median \(String(format: "%.1f", s[s.count / 2])) ms (" + xs.map { String(format: "%.1f", $0) }.joined(separator: " ") + ")"
}
if !parseOnly {
    print("old path-per-file check: \(show(old))")
    print("new directory walk:      \(show(new))")
}
if !reloc.isEmpty { print("relocation layer check:  \(show(reloc))") }

// What a mount reads before the check, and the seal alone, each timed on its own (warm).
var readT: [Double] = [], decodeT: [Double] = [], sealT: [Double] = []
for _ in 0..<max(reps, 9) {
    var t0 = now()
    let bytes = try FS.readFile("\(cacheDir)/v1/manifests/\(id.hex)")
    readT.append((now() - t0) * 1000)
    t0 = now()
    _ = try Manifest.decode(bytes)
    decodeT.append((now() - t0) * 1000)
    t0 = now()
    precondition(tree.contents() != nil, "no seal")
    sealT.append((now() - t0) * 1000)
}
print("manifest read (\(manifest.entries.count) entries): \(show(readT))")
print("manifest decode:         \(show(decodeT))")
print("seal read and parse:     \(show(sealT))")
