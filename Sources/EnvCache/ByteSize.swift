// Byte counts as people type them, for `--cache-size 20G` and `envmount cache prune --size 500M`.

/// Parses sizes such as `100000`, `500M`, `20G`, `1.5G`, `64MiB`, `10GB`.
///
/// Units follow coreutils (`truncate -s`, `du`): a bare letter or a letter with `iB` is binary
/// (`K`/`KiB` = 1024, `M`/`MiB` = 1024², `G`, `T`, `P`, `E`); a letter with `B` is decimal
/// (`KB` = 1000, `MB` = 1000², …). Case does not matter (`20g`, `64mib`); `B` alone means bytes;
/// one space between number and unit is allowed. A fraction is rounded down to whole bytes.
public enum ByteSize {
    public struct ParseError: Error, CustomStringConvertible, Sendable, Equatable {
        public let input: String
        public let reason: String
        public var description: String {
            "invalid size '\(input)': \(reason) (expected a number with an optional unit, e.g. 100000, 500M, 20G, 1.5G, 64MiB, 10GB)"
        }
    }

    public static func parse(_ text: String) throws(ParseError) -> UInt64 {
        let s = text.trimmingSpaces
        func fail(_ reason: String) -> ParseError { ParseError(input: text, reason: reason) }
        guard !s.isEmpty else { throw fail("empty") }

        // Split into the numeric part and the unit.
        let utf = Array(s.utf8)
        var i = 0
        var intPart: UInt64 = 0
        var digits = 0
        var overflow = false
        while i < utf.count, utf[i] >= 0x30, utf[i] <= 0x39 {
            let (m, o1) = intPart.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(utf[i] - 0x30))
            overflow = overflow || o1 || o2
            intPart = a
            digits += 1
            i += 1
        }
        var fracDigits: [UInt8] = []
        if i < utf.count, utf[i] == 0x2e {
            i += 1
            while i < utf.count, utf[i] >= 0x30, utf[i] <= 0x39 { fracDigits.append(utf[i] - 0x30); i += 1 }
            if fracDigits.isEmpty { throw fail("no digits after the decimal point") }
        }
        guard digits > 0 else { throw fail(utf.first == 0x2d ? "a size cannot be negative" : "it does not start with a number") }
        if overflow { throw fail("too large") }
        if i < utf.count, utf[i] == 0x20 { i += 1 }
        let unitText = String(decoding: utf[i...], as: UTF8.self)
        let unit = unitText.lowercased()

        let multiplier: UInt64
        switch unit {
        case "", "b": multiplier = 1
        default:
            let letters: [Character: Int] = ["k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6]
            guard let first = unit.first, let power = letters[first] else { throw fail("unknown unit '\(unitText)'") }
            let rest = unit.dropFirst()
            let base: UInt64
            switch rest {
            case "", "i", "ib": base = 1024
            case "b": base = 1000
            default: throw fail("unknown unit '\(unitText)'")
            }
            var m: UInt64 = 1
            for _ in 0..<power { m *= base }
            multiplier = m
        }

        let (whole, o) = intPart.multipliedReportingOverflow(by: multiplier)
        if o { throw fail("too large") }
        // The fraction, exactly: 0.d1d2…dn × multiplier, rounded down (digits beyond 18 ignored).
        var frac: UInt64 = 0
        if !fracDigits.isEmpty && multiplier > 1 {
            var num: UInt64 = 0, den: UInt64 = 1
            for d in fracDigits.prefix(18) { num = num * 10 + UInt64(d); den *= 10 }
            let (hi, lo) = multiplier.multipliedFullWidth(by: num)
            frac = den.dividingFullWidth((hi, lo)).quotient
        } else if !fracDigits.isEmpty && fracDigits.contains(where: { $0 != 0 }) {
            throw fail("a number of bytes must be whole")
        }
        let (total, o3) = whole.addingReportingOverflow(frac)
        if o3 { throw fail("too large") }
        return total
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
