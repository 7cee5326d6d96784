"""Tools that train the models the stages use (the fastText classifiers); not stages themselves."""
