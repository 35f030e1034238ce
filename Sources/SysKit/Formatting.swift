/// Human-readable byte counts (binary units) for progress and summaries.
public func formatBytes(_ n: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(n) B" : "\(String(format2: v)) \(units[u])"
}

extension String {
    /// A number with two decimals, without Foundation's String(format:).
    public init(format2 v: Double) {
        let scaled = (v * 100).rounded()
        let whole = Int(scaled / 100)
        let frac = abs(Int(scaled) % 100)
        self = "\(whole).\(frac < 10 ? "0" : "")\(frac)"
    }
}
