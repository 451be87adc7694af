"""Renderers: a verdict as the notification document, e-mail text, AWS Chatbot, Slack Block
Kit and the text report. They read verdicts and decide nothing."""
