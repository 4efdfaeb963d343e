// One rule (filter and optional action) of a topic subscription.

@description('SQL filter: sqlExpression in the Service Bus SQL filter syntax (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-filter), e.g. "eventType = \'audit.recorded\' AND sys.Label LIKE \'user.%\'".')
type sqlFilterType = {
  sqlExpression: string
}

@description('Correlation filter: a message matches when every field given here equals its system property (label is the subject) and every entry of properties equals the application property of that name.')
type correlationFilterType = {
  correlationId: string?
  messageId: string?
  to: string?
  replyTo: string?
  label: string?
  sessionId: string?
  replyToSessionId: string?
  contentType: string?
  properties: object?
}

@description('SQL rule action: SET and REMOVE statements applied to each message the rule\'s filter selects (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-rule-action).')
type sqlActionType = {
  sqlExpression: string
}

@description('A rule: name (1-50 characters), exactly one of sqlFilter or correlationFilter, and an optional action.')
type ruleType = {
  name: string
  sqlFilter: sqlFilterType?
  correlationFilter: correlationFilterType?
  action: sqlActionType?
}

@description('Service Bus namespace that holds the topic.')
param namespaceName string

@description('Topic of the subscription.')
param topicName string

@description('Subscription the rule belongs to.')
param subscriptionName string

@description('The rule to create.')
param rule ruleType

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource topic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' existing = {
  parent: namespace
  name: topicName
}

resource subscription 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' existing = {
  parent: topic
  name: subscriptionName
}

resource ruleResource 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = {
  parent: subscription
  name: rule.name
  properties: {
    filterType: rule.?correlationFilter == null ? 'SqlFilter' : 'CorrelationFilter'
    sqlFilter: rule.?sqlFilter
    correlationFilter: rule.?correlationFilter
    action: rule.?action
  }
}
