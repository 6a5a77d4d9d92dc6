import Foundation

/// The least-privilege IAM policy of the engine's role: the only actions CarbonStore uses.
public enum EnginePolicy {
    public static let s3ObjectActions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    public static let s3BucketActions = ["s3:ListBucket"]
    public static let dynamoActions = [
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem",
        "dynamodb:Query",
        "dynamodb:Scan",
    ]

    /// The policy document as JSON. `tableARN` defaults to the table in any region and account
    /// (`arn:aws:dynamodb:*:*:table/NAME`); pass a full ARN to pin it.
    public static func document(bucket: String?, prefix: String = "", table: String?, tableARN: String? = nil)
        -> String
    {
        var statements: [[String: Any]] = []
        if let bucket {
            statements.append([
                "Sid": "CarbonStoreUserFiles", "Effect": "Allow", "Action": s3ObjectActions,
                "Resource": "arn:aws:s3:::\(bucket)/\(prefix)*",
            ])
            var list: [String: Any] = [
                "Sid": "CarbonStoreListUsers", "Effect": "Allow", "Action": s3BucketActions,
                "Resource": "arn:aws:s3:::\(bucket)",
            ]
            if !prefix.isEmpty { list["Condition"] = ["StringLike": ["s3:prefix": ["\(prefix)*"]]] }
            statements.append(list)
        }
        if let table {
            statements.append([
                "Sid": "CarbonStoreWriteLocks", "Effect": "Allow", "Action": dynamoActions,
                "Resource": tableARN ?? "arn:aws:dynamodb:*:*:table/\(table)",
            ])
        }
        let doc: [String: Any] = ["Version": "2012-10-17", "Statement": statements]
        let data = try! JSONSerialization.data(
            withJSONObject: doc, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }
}
