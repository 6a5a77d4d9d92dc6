/// A value given to the model that it cannot hold: which field, the value, and what is expected.
public struct ModelError: Error, Sendable, Hashable, CustomStringConvertible {
    public var field: String
    public var value: String
    public var reason: String

    public init(field: String, value: String, reason: String) {
        self.field = field
        self.value = value
        self.reason = reason
    }

    public var description: String {
        let shown = value.count > 80 ? String(value.prefix(77)) + "..." : value
        return "invalid \(field) '\(shown)': \(reason)"
    }
}
