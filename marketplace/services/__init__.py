"""THE business rules: one verb a function, keyword arguments, one transaction each.

Views, forms and tasks call these and hold no rules themselves. Every function raises a
`marketplace.errors.DomainError` subclass for anything a user can get wrong.
"""
