"""An example app: e-mails new user accounts and purges deleted ones with django-planton.

It exists to show, on a real model, the two usual ways of registering a task
and of doing its work in a ``task_dispatched`` receiver.
"""
