// The publisher's relocation and preflight hooks: which prefixes to look for, symlinks into
// them, and the facts `envmount check` compares with a machine (recorded as manifest metadata).
import SysKit
import EnvFormat

extension Publisher {
    static func relocationPrefixes(sourcePath: String, bundle: BundledPython?) -> [Relocation.Prefix] {
        guard sourcePath != "/" else { return [] }
        return [Relocation.Prefix(from: sourcePath.pathBytes, to: [])] + (bundle?.relocationPrefixes ?? [])
    }

    /// Symlinks whose target is a prefix or lies inside one.
    static func symlinkRecords(_ builder: ManifestBuilder, prefixes: [Relocation.Prefix]) -> [Relocation.Symlink] {
        var out: [Relocation.Symlink] = []
        let byLength = prefixes.indices.sorted { prefixes[$0].from.count > prefixes[$1].from.count }
        for (i, n) in builder.nodes.enumerated() where n.kind == .symlink {
            for k in byLength where n.symlinkTarget.starts(with: prefixes[k].from) {
                let len = prefixes[k].from.count
                if n.symlinkTarget.count == len || n.symlinkTarget[len] == UInt8(ascii: "/") {
                    out.append(Relocation.Symlink(entry: UInt32(i), prefix: UInt8(k)))
                    break
                }
            }
        }
        return out
    }

    /// A node's path inside the tree ("bin/python").
    static func treePath(_ builder: ManifestBuilder, _ node: Int) -> [UInt8] {
        var parts: [[UInt8]] = []
        var cur = node
        while cur != 0 && parts.count < 4096 {
            parts.append(builder.nodes[cur].name)
            cur = builder.nodes[cur].parent
        }
        return Array(parts.reversed().joined(separator: [UInt8(ascii: "/")]))
    }

    /// Facts for the preflight: ELF machine and newest GLIBC version, the bundled interpreter,
    /// and the CUDA runtime of nvidia-cuda-runtime wheels with the driver it needs.
    static func environmentFacts(_ scanner: PrefixScanner, _ builder: ManifestBuilder, bundle: BundledPython?) -> [(key: String, value: String)] {
        var facts: [(key: String, value: String)] = []
        if !scanner.machines.isEmpty { facts.append(("elf.machine", scanner.machines.sorted().joined(separator: ","))) }
        if let g = scanner.glibc { facts.append(("elf.glibc", "\(g.0).\(g.1)")) }
        if let b = bundle {
            facts.append(("python.bundled", BundledPython.directoryName))
            facts.append(("python.bundled.from", b.prefix))
        }
        var cuda: (Int, Int)? = nil
        for n in builder.nodes where n.kind == .directory && n.name.starts(with: "nvidia_cuda_runtime_cu".utf8) {
            let s = String(decoding: n.name, as: UTF8.self)
            guard s.hasSuffix(".dist-info"), let dash = s.firstIndex(of: "-") else { continue }
            let v = s[s.index(after: dash)...].split(separator: ".")
            if v.count >= 2, let a = Int(v[0]), let b = Int(v[1]), (a, b) > (cuda ?? (0, 0)) { cuda = (a, b) }
        }
        if let c = cuda {
            facts.append(("cuda.version", "\(c.0).\(c.1)"))
            if let d = CudaDriver.minimum(major: c.0) { facts.append(("cuda.driver.min", d)) }
            if let d = CudaDriver.full(major: c.0, minor: c.1) { facts.append(("cuda.driver.full", d)) }
        }
        return facts
    }
}

/// NVIDIA's published driver minimums (CUDA Toolkit release notes, Linux): the minimum for a
/// major version under minor-version compatibility, and the driver each toolkit shipped with.
public enum CudaDriver {
    public static func minimum(major: Int) -> String? {
        switch major {
        case 11: return "450.80.02"
        case 12: return "525.60.13"
        case 13: return "580.65.06"
        default: return nil
        }
    }

    public static func full(major: Int, minor: Int) -> String? {
        let table: [Int: [Int: String]] = [
            11: [0: "450.36.06", 1: "455.23", 2: "460.27.03", 3: "465.19.01", 4: "470.42.01", 5: "495.29.05",
                 6: "510.39.01", 7: "515.43.04", 8: "520.61.05"],
            12: [0: "525.60.13", 1: "530.30.02", 2: "535.54.03", 3: "545.23.06", 4: "550.54.14", 5: "555.42.02",
                 6: "560.28.03", 8: "570.26", 9: "575.51.03"],
            13: [0: "580.65.06"],
        ]
        return table[major]?[minor]
    }
}
