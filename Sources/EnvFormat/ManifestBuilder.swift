/// Collects a tree in any order (usually the order a walk found it) and lays it out as a
/// manifest: breadth-first, children sorted by name bytes, names and targets in one blob.
public struct ManifestBuilder {
    public struct Node {
        public var parent: Int                 // index of the parent node; the root is its own parent
        public var name: [UInt8]
        public var kind: Manifest.Kind
        public var mode: UInt32
        public var uid: UInt32
        public var gid: UInt32
        public var mtimeNs: Int64
        public var size: UInt64
        public var symlinkTarget: [UInt8] = []
        public var hardlinkOf: Int? = nil      // node index of the name that owns the data
        public var spans: [Manifest.Span] = []

        public init(parent: Int, name: [UInt8], kind: Manifest.Kind, mode: UInt32, uid: UInt32, gid: UInt32,
                    mtimeNs: Int64, size: UInt64) {
            self.parent = parent; self.name = name; self.kind = kind; self.mode = mode
            self.uid = uid; self.gid = gid; self.mtimeNs = mtimeNs; self.size = size
        }
    }

    public private(set) var nodes: [Node] = []

    public init() {}

    /// Adds a node; the first must be the root (parent 0). Returns its index.
    @discardableResult
    public mutating func add(_ node: Node) -> Int {
        nodes.append(node)
        return nodes.count - 1
    }

    public mutating func appendSpan(_ node: Int, _ span: Manifest.Span) {
        nodes[node].spans.append(span)
    }

    /// `relocation` names nodes by their index here; the manifest's records name entries.
    public func build(chunking: ChunkingParams, sourcePath: [UInt8], metadata: [(key: String, value: String)],
                      chunks: [Manifest.ChunkRecord], relocation: Relocation = Relocation()) throws -> Manifest {
        precondition(!nodes.isEmpty && nodes[0].kind == .directory)
        var children = [[Int]](repeating: [], count: nodes.count)
        for i in 1..<nodes.count { children[nodes[i].parent].append(i) }
        for i in children.indices where children[i].count > 1 {
            children[i].sort { compareBytes(nodes[$0].name, nodes[$1].name) < 0 }
        }
        // Breadth-first numbering.
        var order = [0]
        order.reserveCapacity(nodes.count)
        var head = 0
        while head < order.count {
            order.append(contentsOf: children[order[head]])
            head += 1
        }
        var newIndex = [Int](repeating: -1, count: nodes.count)
        for (k, old) in order.enumerated() { newIndex[old] = k }

        var names: [UInt8] = []
        var entries: [Manifest.Entry] = []
        var spans: [Manifest.Span] = []
        entries.reserveCapacity(order.count)
        for (k, old) in order.enumerated() {
            let n = nodes[old]
            let nameStart = UInt32(names.count)
            if k > 0 {
                guard n.name.count <= 255 else { throw FormatError("name longer than 255 bytes: \(n.name.pathString)") }
                names.append(contentsOf: n.name)
            }
            var e = Manifest.Entry(parent: UInt32(newIndex[n.parent]), nameStart: nameStart,
                                   nameLength: UInt16(k > 0 ? n.name.count : 0), kind: n.kind, mode: n.mode,
                                   uid: n.uid, gid: n.gid, mtimeNs: n.mtimeNs, size: n.size,
                                   first: 0, count: 0, owner: UInt32(k))
            switch n.kind {
            case .directory:
                let c = children[old]
                e.first = UInt32(c.isEmpty ? 0 : newIndex[c[0]])
                e.count = UInt32(c.count)
            case .symlink:
                e.first = UInt32(names.count)
                e.count = UInt32(n.symlinkTarget.count)
                names.append(contentsOf: n.symlinkTarget)
            case .regular:
                if let o = n.hardlinkOf {
                    e.owner = UInt32(newIndex[o])
                } else {
                    e.first = UInt32(spans.count)
                    e.count = UInt32(n.spans.count)
                    spans.append(contentsOf: n.spans)
                }
            }
            entries.append(e)
        }
        var rel = relocation
        for k in rel.files.indices { rel.files[k].entry = UInt32(newIndex[Int(rel.files[k].entry)]) }
        for k in rel.symlinks.indices { rel.symlinks[k].entry = UInt32(newIndex[Int(rel.symlinks[k].entry)]) }
        for k in rel.patches.indices { rel.patches[k].entry = UInt32(newIndex[Int(rel.patches[k].entry)]) }
        rel.files.sort { $0.entry < $1.entry }
        rel.symlinks.sort { $0.entry < $1.entry }
        rel.patches.sort { ($0.entry, $0.offset) < ($1.entry, $1.offset) }
        let m = Manifest(chunking: chunking, sourcePath: sourcePath, metadata: metadata, chunks: chunks,
                         entries: entries, names: names, spans: spans, relocation: rel)
        try m.validate()
        try rel.validate(m)
        return m
    }
}

extension Array where Element == UInt8 {
    var pathString: String { String(decoding: self, as: UTF8.self) }
}

extension ManifestBuilder {
    /// Renumbers a node's span chunks (after duplicate chunks are merged).
    public mutating func remapChunks(_ node: Int, _ f: (UInt32) -> UInt32) {
        for s in nodes[node].spans.indices { nodes[node].spans[s].chunk = f(nodes[node].spans[s].chunk) }
    }
}

extension ManifestBuilder {
    /// Changes a node in place (a publish of a writable mount takes an unchanged file's size and
    /// times from its base revision, not from the relocated view it walked).
    public mutating func update(_ node: Int, _ body: (inout Node) -> Void) {
        body(&nodes[node])
    }
}
