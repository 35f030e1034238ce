extension StringProtocol {
    /// The text without leading and trailing white space: what Foundation's
    /// `trimmingCharacters(in: .whitespacesAndNewlines)` gives (the Unicode White_Space
    /// property), or `.whitespaces` when `newlines` is false (line and paragraph breaks kept).
    /// Here so that no target needs Foundation, which would bring ICU into the binaries.
    public func trimmingWhitespace(newlines: Bool = true) -> String {
        func trimmed(_ c: Unicode.Scalar) -> Bool {
            guard c.properties.isWhitespace else { return false }
            if newlines { return true }
            return !((0x0A...0x0D).contains(c.value) || c.value == 0x85 || c.value == 0x2028 || c.value == 0x2029)
        }
        var s = Substring(self).unicodeScalars[...]
        while let f = s.first, trimmed(f) { s = s.dropFirst() }
        while let l = s.last, trimmed(l) { s = s.dropLast() }
        return String(String.UnicodeScalarView(s))
    }
}
