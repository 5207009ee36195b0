"""The softswitch as a UA registering to vendors."""
