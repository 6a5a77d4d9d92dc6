import CarbonModel

// PLACEHOLDER: the format helper replaces this file.
public struct RecordCodec: Sendable {
    public init() {}
    public func encode(_ record: UserRecord) -> [UInt8] { fatalError("not yet") }
    public func decode(_ bytes: [UInt8]) throws(FormatError) -> UserRecord { fatalError("not yet") }
}

public struct FormatError: Error, Sendable, CustomStringConvertible {
    public var description: String
}
